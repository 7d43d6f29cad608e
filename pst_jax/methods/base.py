"""Fine-tuning methods as pluggable pairs: how to split the params, how to rebuild them each step.

A :class:`Method` decides which part of a pretrained parameter tree is trained (``trainable``, a dict of
named groups, declared in ``Method.groups``, each stepped by its own optimizer group) and which is ``frozen`` (a flat
``{path: array}`` dict, never differentiated), and how the model's params are computed from both at
a given sparsity. The training loop, schedule, sharding and export are shared by every method.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pst_jax.core.config import PSTConfig
from pst_jax.core.model import init_pst, masks, merge
from pst_jax.core.pst import check_sparsity
from pst_jax.core.rules import Plan, flatten, unflatten
from pst_jax.core.types import Array, FlatParams, Params

Trainable = dict[str, Any]


class Method(NamedTuple):
    """A fine-tuning method.

    Attributes:
      name: e.g. ``"pst"``.
      init: ``(key, params) -> (trainable, frozen)``; runs under ``jax.jit``.
      effective_params: ``(trainable, frozen, sparsity) -> params`` of the original architecture;
        differentiable in ``trainable``.
      sparse: whether the method prunes (``sparsity`` is ignored otherwise).
      groups: the names of the top-level groups ``init``'s ``trainable`` has, each stepped by the optimizer
        group of that name (:data:`pst_jax.training.optim.OPTIMIZER_GROUPS`): a group with no optimizer entry
        fails in ``make_optimizer``, a trainable group not declared here fails when the optimizer is initialised.
      regularizer: optional ``(trainable, sparsity) -> scalar`` added to the task loss (e.g. soft
        movement pruning's penalty on its scores); ``None`` for none.
      masks: optional ``(trainable, frozen, sparsity) -> {matrix name: 0/1 (d_in, d_out) mask}``, the
        masks ``effective_params`` applies (pruning methods; used to inspect them and to time them).
      apply_loss: optional ``(loss_fn, trainable, frozen, sparsity, batch, dropout_rng) -> (loss, aux)``
        replacing ``loss_fn(effective_params(...), ...)`` in the train step, for methods whose training
        forward differs from their merged weights (LoRA: ``x @ W0 + (x @ A) @ B``, no full weight
        gradient). Evaluation and export always use ``effective_params``.
    """

    name: str
    init: Callable[[Array, Params], tuple[Trainable, FlatParams]]
    effective_params: Callable[[Trainable, FlatParams, Array], dict[str, Any]]
    sparse: bool
    groups: tuple[str, ...]
    regularizer: Callable[[Trainable, Array], Array] | None = None
    masks: Callable[[Trainable, FlatParams, Array], dict[str, Array]] | None = None
    apply_loss: Callable[..., tuple[Array, Any]] | None = None


def split_head(params: Params, plan: Plan, train_head: bool = True) -> tuple[FlatParams, FlatParams]:
    """``(head, rest)`` flat dicts; with ``train_head=False`` the head stays in ``rest``."""
    flat = flatten(params)
    head_paths = set(plan.paths("head")) if train_head else set()
    head = {p: v for p, v in flat.items() if p in head_paths}
    rest = {p: v for p, v in flat.items() if p not in head_paths}
    return head, rest


def pst(plan: Plan, config: PSTConfig = PSTConfig(), train_head: bool = True) -> Method:
    """PST (Li et al., IJCAI 2022): train the factors of each sparsified matrix, and the task head.

    ``trainable = {"pst": factors, "head": head params}``; every pretrained weight is frozen.
    """

    def init(key: Array, params: Params):
        head, frozen = split_head(params, plan, train_head)
        return {"pst": init_pst(key, plan, config), "head": head}, frozen

    def effective_params(trainable: Trainable, frozen: FlatParams, sparsity: Array):
        return merge({**frozen, **trainable["head"]}, trainable["pst"], sparsity, plan, config)

    def pst_masks(trainable: Trainable, frozen: FlatParams, sparsity: Array):
        return masks(frozen, trainable["pst"], sparsity, plan, config)

    return Method("pst", init, effective_params, sparse=True, groups=("pst", "head"), masks=pst_masks)


def dense() -> Method:
    """Plain full fine-tuning: every parameter trained, nothing pruned (``trainable = {"weights": ...}``)."""

    def init(key: Array, params: Params):
        return {"weights": flatten(params)}, {}

    def effective_params(trainable: Trainable, frozen: FlatParams, sparsity: Array):
        return unflatten({**frozen, **trainable["weights"]})

    return Method("dense", init, effective_params, sparse=False, groups=("weights",))


def cast_frozen(frozen: FlatParams, dtype: Any) -> FlatParams:
    """``frozen`` with its floating matrices (two or more axes) stored in ``dtype``; vectors stay as they are.

    The matrices (kernels, embeddings) are nearly all the bytes: BERT-base's biases and LayerNorm vectors
    are 0.1% of them, and kept in float32 they cost nothing and LayerNorm's gains, which scale every
    activation, are not rounded.

    Example:
      >>> out = cast_frozen({"k": jnp.ones((2, 2)), "b": jnp.ones(2)}, jnp.bfloat16)
      >>> str(out["k"].dtype), str(out["b"].dtype)
      ('bfloat16', 'float32')
    """
    return {
        path: x.astype(dtype) if x.ndim >= 2 and jnp.issubdtype(x.dtype, jnp.floating) else x
        for path, x in frozen.items()
    }


def with_frozen_dtype(method: Method, dtype: Any) -> Method:
    """``method`` whose ``init`` stores the frozen matrices in ``dtype`` (:func:`cast_frozen`); trainable groups,
    and so the optimizer state, stay as ``method`` makes them (float32). ``effective_params`` forms every
    adapted or masked kernel in float32 from them (:func:`~pst_jax.core.pst.at_least_float32`).

    Example:
      >>> method = with_frozen_dtype(pst(plan), jnp.bfloat16)  # doctest: +SKIP
    """
    if jnp.dtype(dtype) == jnp.float32:
        return method

    def init(key: Array, params: Params):
        trainable, frozen = method.init(key, params)
        return trainable, cast_frozen(frozen, dtype)

    return method._replace(init=init)


def export_model(trainable: Trainable, frozen: FlatParams, sparsity: float, method: Method) -> dict[str, Any]:
    """The deployable params of the original architecture at ``sparsity``, as host float32 NumPy arrays.

    ``trainable`` is ``state.trainable`` (or a host copy of it). For PST each sparsified kernel is
    ``M * W~`` (pruned entries exactly zero) and the factors are dropped. The tree has the original
    architecture's structure, so ``model.save_pretrained(path, params=export_model(...))`` writes an
    ordinary checkpoint; frozen weights stored in bfloat16 are written back as float32 (their values
    rounded to bfloat16), so it loads as the original does.
    """
    check_sparsity(sparsity)
    params = jax.jit(method.effective_params)(trainable, frozen, jnp.float32(sparsity))
    return jax.tree.map(_host_float32, jax.device_get(params))


def _host_float32(x: Any) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x
