"""Every fine-tuning method by name: build it (:func:`make_method`) and count what it trains.

========================  =========================================================================
``pst``                   PST (Li et al., IJCAI 2022), :func:`pst_jax.methods.base.pst`
``dense``                 full fine-tuning, :func:`pst_jax.methods.base.dense`
``magnitude``             magnitude pruning (MaP), :func:`pst_jax.methods.pruning.magnitude`
``movement``              movement pruning (MvP), :func:`pst_jax.methods.pruning.movement`
``soft_movement``         soft movement pruning, :func:`pst_jax.methods.pruning.soft_movement`
``lora``                  LoRA (dense, low rank), :func:`pst_jax.methods.lora.lora`
========================  =========================================================================

A new method is a :class:`~pst_jax.methods.base.Method` (its ``init`` and ``effective_params``); a new
importance criterion for the pruning baselines is one ``(scores, sparsity) -> mask`` function (see
:func:`pst_jax.methods.pruning.movement`). The training loop is shared.
"""

import math

from pst_jax.core.config import PSTConfig
from pst_jax.core.pst import num_factor_params
from pst_jax.core.rules import Plan, flatten
from pst_jax.core.types import Params
from pst_jax.methods.base import Method, dense, pst
from pst_jax.methods.lora import lora, lora_apply_loss, lora_interceptor, lora_scale  # noqa: F401 (re-exported)
from pst_jax.methods.pruning import (  # noqa: F401 (re-exported)
    REFERENCE_FROZEN,
    magnitude,
    movement,
    soft_movement,
    soft_threshold,
    split_weights,
    threshold_mask,
)

METHOD_NAMES = ("pst", "dense", "magnitude", "movement", "soft_movement", "lora")
#: Methods that prune (their exported kernels have the target sparsity).
SPARSE_METHODS = ("pst", "magnitude", "movement", "soft_movement")


def make_method(
    name: str,
    plan: Plan,
    *,
    config: PSTConfig = PSTConfig(),
    train_head: bool = True,
    lora_rank: int = 8,
    lora_alpha: float | None = None,
    final_sparsity: float | None = None,
    freeze: str | None = None,
) -> Method:
    """The method called ``name``, over the matrices of ``plan``.

    Args:
      name: one of :data:`METHOD_NAMES`.
      plan: the matrices PST sparsifies; the pruning baselines prune them, LoRA adapts them.
      config: PST's ranks and scalars (``pst`` only).
      train_head: train the task head (``pst`` and ``lora``; the other methods train every weight).
      lora_rank, lora_alpha: LoRA's rank and ``alpha`` (scale ``alpha / rank``, 1 by default).
      final_sparsity: the schedule's final sparsity, needed by ``soft_movement`` (its threshold
        ramps with the sparsity).
      freeze: regex of paths the pruning baselines keep frozen (:data:`REFERENCE_FROZEN` reproduces
        the movement-pruning reference); ``None`` trains every weight.

    Raises:
      ValueError: unknown name, or ``soft_movement`` without ``final_sparsity``.
    """
    if name == "pst":
        return pst(plan, config, train_head)
    if name == "dense":
        return dense()
    if name == "magnitude":
        return magnitude(plan, freeze)
    if name == "movement":
        return movement(plan, freeze)
    if name == "soft_movement":
        if final_sparsity is None:
            raise ValueError("soft_movement needs final_sparsity (its threshold ramps with the schedule)")
        return soft_movement(plan, final_sparsity, freeze=freeze)
    if name == "lora":
        return lora(plan, lora_rank, lora_alpha, train_head)
    raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHOD_NAMES)}")


def trainable_parameters(
    method_name: str,
    params: Params,
    plan: Plan,
    rank: int = 8,
    config: PSTConfig = PSTConfig(),
    train_head: bool = True,
    freeze: str | None = None,
) -> int:
    """Exact number of parameters a method trains, from a tree of arrays or ``jax.ShapeDtypeStruct``.

    * dense, magnitude: every weight (minus paths matching ``freeze``, for magnitude);
    * movement, soft_movement: those weights plus one score per entry of each planned matrix;
    * lora: ``rank * (d_in + d_out)`` per planned matrix, plus the head if trained;
    * pst: ``(r_w + r_m) * (d_in + d_out) + d_in + d_out`` per planned matrix, plus the head if trained.

    Example:
      >>> trainable_parameters("lora", shapes, make_plan(shapes, BERT_RULES))  # doctest: +SKIP
      2359296
    """
    sizes = {path: math.prod(leaf.shape) for path, leaf in flatten(params).items()}
    head = sum(sizes[p] for p in plan.paths("head")) if train_head else 0
    frozen = set(split_weights(sizes, freeze).frozen) if freeze is not None else set()
    weights = sum(n for p, n in sizes.items() if p not in frozen)
    if method_name == "dense":
        return sum(sizes.values())
    if method_name == "magnitude":
        return weights
    if method_name in ("movement", "soft_movement"):
        return weights + sum(m.numel for m in plan.matrices)
    if method_name == "lora":
        return sum(rank * (m.d_in + m.d_out) for m in plan.matrices) + head
    if method_name == "pst":
        return sum(num_factor_params(m.d_in, m.d_out, config) for m in plan.matrices) + head
    raise ValueError(f"unknown method {method_name!r}; known: {METHOD_NAMES}")
