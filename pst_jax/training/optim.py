"""The optimizer: AdamW with linear decay on the trainable groups, ``set_to_zero`` for frozen ones.

The trainable tree of a run is a dict of groups (PST: ``{"pst": factors, "head": {path: array}}``;
dense fine-tuning: ``{"weights": ...}``; movement pruning adds ``"scores"``, LoRA trains ``"lora"``; see
:mod:`pst_jax.methods.base`, :mod:`pst_jax.methods.pruning`, :mod:`pst_jax.methods.lora`): only it is differentiated, so
frozen weights get neither gradient buffers nor optimizer state. :func:`param_labels` labels each
leaf by its top-level group; an unknown group is labelled ``"frozen"`` and zeroed, so a leaf handed
to the optimizer by mistake cannot move.
"""

from collections.abc import Mapping
from typing import Any

import jax
import optax

GROUPS = ("pst", "head", "weights", "scores", "lora")


def learning_rate_schedule(learning_rate: float, total_steps: int, warmup_steps: int = 0) -> optax.Schedule:
    """Linear warm-up from 0 over ``warmup_steps`` (none by default), then linear decay to 0 at ``total_steps``.

    Example:
      >>> lr = learning_rate_schedule(1e-4, 100)
      >>> float(lr(0)), float(lr(50)), float(lr(100))
      (0.0001, 5e-05, 0.0)
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}), got {warmup_steps}")
    decay = optax.linear_schedule(learning_rate, 0.0, total_steps - warmup_steps)
    if not warmup_steps:
        return decay
    warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    return optax.join_schedules([warmup, decay], [warmup_steps])


def param_labels(trainable: Mapping[str, Any]) -> dict[str, Any]:
    """Labels every leaf by its top-level group: one of :data:`GROUPS`, or ``"frozen"``."""
    return {
        group: jax.tree.map(lambda _, g=group: g if g in GROUPS else "frozen", subtree)
        for group, subtree in trainable.items()
    }


def make_optimizer(
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    head_learning_rate: float | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    scores_learning_rate: float | None = None,
) -> optax.GradientTransformation:
    """AdamW (weight decay 0 by default, as in the paper) with linear decay, partitioned by group.

    Args:
      learning_rate: peak learning rate of the PST factors (and of all weights in dense fine-tuning).
      total_steps: optimizer steps of the run (the decay reaches 0 there).
      warmup_steps: linear warm-up steps (0 for GLUE, 500 for the NLG recipe).
      weight_decay: decoupled weight decay.
      head_learning_rate: peak learning rate of the task head; defaults to ``learning_rate``.
      b1, b2, eps: Adam's constants (PyTorch's AdamW defaults).
      scores_learning_rate: peak learning rate of movement pruning's scores; defaults to
        ``learning_rate`` (the movement-pruning reference uses 1e-2). Scores get no weight decay, as in
        the reference (its scores group sets no ``weight_decay``, and its AdamW's default is 0).

    Example:
      >>> tx = make_optimizer(3e-5, total_steps=1000)
      >>> state = tx.init({"pst": {"m": {"U": jnp.zeros((2, 1))}}, "head": {}})  # doctest: +SKIP
    """

    def adamw(lr: float, decay: float = weight_decay) -> optax.GradientTransformation:
        schedule = learning_rate_schedule(lr, total_steps, warmup_steps)
        return optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=decay)

    return optax.partition(
        {
            "pst": adamw(learning_rate),
            "weights": adamw(learning_rate),
            "head": adamw(learning_rate if head_learning_rate is None else head_learning_rate),
            "scores": adamw(learning_rate if scores_learning_rate is None else scores_learning_rate, decay=0.0),
            "lora": adamw(learning_rate),
            "frozen": optax.set_to_zero(),
        },
        param_labels,
    )
