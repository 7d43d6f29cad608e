"""Parameter counts of a PST setup, from shapes only (nothing allocated)."""

import math
from typing import Any, NamedTuple

import jax

from pst_jax.core.config import PSTConfig
from pst_jax.core.pst import num_factor_params
from pst_jax.core.rules import Plan, flatten


class ParamCount(NamedTuple):
    """Parameter counts of a setup.

    Attributes:
      pst: PST factors ``U, V, A, B, R, C`` of every sparsified matrix.
      head: the task head (trainable when ``train_head``).
      trainable: what the optimizer steps: ``pst`` plus ``head`` if trained.
      model: all parameters of the original architecture.
      sparsified: entries of the sparsified matrices (movement pruning learns one score each).
    """

    pst: int
    head: int
    trainable: int
    model: int
    sparsified: int

    @property
    def movement_pruning_trainable(self) -> int:
        """What movement pruning trains on the same model: every weight plus one score per sparsified weight."""
        return self.model + self.sparsified

    @property
    def pst_vs_movement(self) -> float:
        """``pst / movement_pruning_trainable``: the paper's "1.5%" on BERT-base."""
        return self.pst / self.movement_pruning_trainable


def count_parameters(params: Any, plan: Plan, config: PSTConfig = PSTConfig(), train_head: bool = True) -> ParamCount:
    """Counts a setup's parameters from a tree of arrays or ``jax.ShapeDtypeStruct``.

    Example:
      >>> shapes = param_shapes(FlaxBertForSequenceClassification, BertConfig())  # doctest: +SKIP
      >>> count_parameters(shapes, make_plan(shapes, BERT_RULES)).pst            # doctest: +SKIP
      2820096
    """
    sizes = {path: math.prod(leaf.shape) for path, leaf in flatten(params).items()}
    pst = sum(num_factor_params(m.d_in, m.d_out, config) for m in plan.matrices)
    head = sum(sizes[p] for p in plan.paths("head"))
    return ParamCount(
        pst=pst,
        head=head,
        trainable=pst + (head if train_head else 0),
        model=sum(sizes.values()),
        sparsified=sum(m.numel for m in plan.matrices),
    )


def param_shapes(model_class: Any, config: Any, input_shape: tuple[int, int] = (1, 1)) -> Any:
    """Parameter shapes of a Hugging Face Flax model built from ``config``, via ``jax.eval_shape``.

    Nothing is allocated, so BERT-large or GPT-2 XL can be counted on a laptop.
    """
    model = model_class(config, _do_init=False)
    return jax.eval_shape(lambda key: model.init_weights(key, input_shape), jax.random.key(0))
