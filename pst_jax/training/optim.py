"""The optimizer: one AdamW with linear decay per trainable group that the method declares.

The trainable tree of a run is a dict of groups (PST: ``{"pst": factors, "head": {path: array}}``;
dense fine-tuning: ``{"weights": ...}``; movement pruning adds ``"scores"``, LoRA trains ``"lora"``; see
:mod:`pst_jax.methods.base`, :mod:`pst_jax.methods.pruning`, :mod:`pst_jax.methods.lora`): only it is differentiated, so
frozen weights get neither gradient buffers nor optimizer state. Each method declares its groups
(``Method.groups``); :func:`make_optimizer` builds one AdamW per declared group from the rules of
:data:`OPTIMIZER_GROUPS` and refuses a group it has no rule for, and :func:`param_labels` refuses a
trainable group the method did not declare, so no parameter is silently left untrained.
"""

import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import optax

from pst_jax.methods.base import Method


class GroupRule(NamedTuple):
    """How :func:`make_optimizer` steps one group.

    Attributes:
      learning_rate: the :func:`make_optimizer` argument giving the group's peak learning rate; when that
        argument is ``None``, ``learning_rate`` itself.
      weight_decay: whether the group gets ``make_optimizer``'s ``weight_decay`` (else 0).
    """

    learning_rate: str
    weight_decay: bool = True


OPTIMIZER_GROUPS: dict[str, GroupRule] = {
    "pst": GroupRule("learning_rate"),
    "weights": GroupRule("learning_rate"),
    "lora": GroupRule("learning_rate"),
    "head": GroupRule("head_learning_rate"),
    "scores": GroupRule("scores_learning_rate", weight_decay=False),
}
"""The trainable groups :func:`make_optimizer` knows: a method may declare only these."""


def _declared(method: Method | Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """``(name, groups)`` of a method, or of a bare sequence of group names (named ``"<groups>"``)."""
    if isinstance(method, Method):
        return method.name, tuple(method.groups)
    return "<groups>", tuple(method)


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


def param_labels(trainable: Mapping[str, Any], method: Method | Sequence[str]) -> dict[str, Any]:
    """Labels every leaf by its top-level group, each one of the groups ``method`` declares.

    Raises:
      ValueError: a top-level group of ``trainable`` that the method did not declare.

    Example:
      >>> param_labels({"pst": {"m": {"U": 0.0}}, "head": {"h": 0.0}}, ("pst", "head"))
      {'pst': {'m': {'U': 'pst'}}, 'head': {'h': 'head'}}
    """
    name, groups = _declared(method)
    undeclared = [group for group in trainable if group not in groups]
    if undeclared:
        raise ValueError(
            f"trainable group(s) {', '.join(map(repr, undeclared))} not declared by method {name!r} "
            f"(it declares {groups}): add them to its Method.groups"
        )
    return {group: jax.tree.map(lambda _, g=group: g, subtree) for group, subtree in trainable.items()}


def make_optimizer(
    method: Method | Sequence[str],
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
    """AdamW (weight decay 0 by default, as in the paper) with linear decay, one per group the method declares.

    Args:
      method: the :class:`~pst_jax.methods.base.Method` whose ``groups`` are partitioned (or a sequence of
        group names); each must be a key of :data:`OPTIMIZER_GROUPS`.
      learning_rate: peak learning rate of the PST factors (and of all weights in dense fine-tuning).
      total_steps: optimizer steps of the run (the decay reaches 0 there).
      warmup_steps: linear warm-up steps (0 for GLUE, 500 for the NLG recipe).
      weight_decay: decoupled weight decay.
      head_learning_rate: peak learning rate of the task head; defaults to ``learning_rate``.
      b1, b2, eps: Adam's constants (PyTorch's AdamW defaults).
      scores_learning_rate: peak learning rate of movement pruning's scores; defaults to
        ``learning_rate`` (the movement-pruning reference uses 1e-2). Scores get no weight decay, as in
        the reference (its scores group sets no ``weight_decay``, and its AdamW's default is 0).

    Raises:
      ValueError: a declared group with no entry in :data:`OPTIMIZER_GROUPS` (raised here, before any
        init); a trainable group the method did not declare is refused when the optimizer is initialised
        (see :func:`param_labels`).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = make_optimizer(("pst", "head"), 3e-5, total_steps=1000)
      >>> state = tx.init({"pst": {"m": {"U": jnp.zeros((2, 1))}}, "head": {}})
    """
    name, groups = _declared(method)
    for group in groups:
        if group not in OPTIMIZER_GROUPS:
            raise ValueError(
                f"method {name!r} declares trainable group {group!r}, which has no optimizer entry "
                f"(known: {', '.join(OPTIMIZER_GROUPS)})"
            )
    peak = {
        "learning_rate": learning_rate,
        "head_learning_rate": head_learning_rate,
        "scores_learning_rate": scores_learning_rate,
    }

    def adamw(rule: GroupRule) -> optax.GradientTransformation:
        lr = learning_rate if peak[rule.learning_rate] is None else peak[rule.learning_rate]
        schedule = learning_rate_schedule(lr, total_steps, warmup_steps)
        decay = weight_decay if rule.weight_decay else 0.0
        return optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=decay)

    transforms = {group: adamw(OPTIMIZER_GROUPS[group]) for group in groups}
    return optax.partition(transforms, functools.partial(param_labels, method=method))
