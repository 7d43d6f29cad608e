"""LoRA (Hu et al., ICLR 2022) as a :class:`~pst_jax.methods.base.Method`: PST's dense, low-rank baseline.

It adapts the matrices PST sparsifies (those of the :class:`~pst_jax.core.rules.Plan`) and prunes nothing.
Training runs the unmerged forward ``x @ W0 + (x @ A) @ B`` (:func:`lora_apply_loss`), so no full weight
gradient is formed; evaluation and export use the merged kernels.
"""

import math
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pst_jax.core.model import map_matrices
from pst_jax.core.pst import at_least_float32
from pst_jax.core.rules import Matrix, Plan, unflatten
from pst_jax.core.types import Array, Batch, FlatParams, LossFn, Params
from pst_jax.methods.base import Method, Trainable, split_head


def lora_scale(rank: int, alpha: float | None = None) -> float:
    """LoRA's ``alpha / rank``; ``alpha`` defaults to ``rank`` (scale 1).

    Example:
      >>> lora_scale(8), lora_scale(8, 16)
      (1.0, 2.0)
    """
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    return float(rank if alpha is None else alpha) / rank


def init_lora_factors(key: Array, d_in: int, d_out: int, rank: int, dtype=jnp.float32) -> dict[str, Array]:
    """LoRA's init for a ``(d_in, d_out)`` matrix: ``A (d_in, r)`` Kaiming-uniform, ``B (r, d_out)`` zeros.

    As ``loralib``'s ``Linear``: ``kaiming_uniform_(lora_A, a=sqrt(5))`` on its ``(r, d_in)`` matrix,
    i.e. uniform in ``[-1/sqrt(d_in), 1/sqrt(d_in)]``; ``B = 0`` makes step 0 the pretrained model.

    Example:
      >>> f = init_lora_factors(jax.random.key(0), 4, 6, 2)
      >>> f["A"].shape, f["B"].shape, float(abs(f["B"]).sum())
      ((4, 2), (2, 6), 0.0)
    """
    bound = 1.0 / math.sqrt(d_in)
    return {
        "A": jax.random.uniform(key, (d_in, rank), dtype, -bound, bound),
        "B": jnp.zeros((rank, d_out), dtype),
    }


def _lora_modules(plan: Plan) -> dict[str, tuple[Matrix, ...]]:
    """Matrices of each sparsified kernel, keyed by the path of the module that owns it (``.../query``)."""
    out = {}
    for path, ms in plan.by_kernel().items():
        module, _, leaf = path.rpartition("/")
        if leaf != "kernel":
            raise ValueError(f"LoRA needs kernels named '<module>/kernel', got {path!r}")
        out[module] = ms
    return out


def lora_interceptor(
    plan: Plan, factors: Mapping[str, Mapping[str, Array]], scale: float, seen: set[str] | None = None
) -> Callable[..., Any]:
    """A ``flax.linen.intercept_methods`` interceptor adding LoRA's update to every planned linear layer.

    The layer's own output ``y = x @ W0 + b`` is computed by the module, then
    ``scale * (x @ A) @ B`` is added, without ever forming ``W0 + A @ B``: the backward pass computes
    ``dA, dB`` from ``(d_in, r)`` and ``(r, d_out)`` products only, and no gradient of a full weight.
    Modules are matched by ``"/".join(context.module.path)`` (e.g.
    ``bert/encoder/layer/0/attention/self/query``), the kernel's param path without ``/kernel``.
    A fused kernel (GPT-2's ``c_attn``, output ``[q | k | v]``) gets each part's update on its slice.

    Args:
      plan: which layers (and, for fused ones, which parts) are adapted.
      factors: ``{matrix name: {"A": (d_in, r), "B": (r, d_out)}}``.
      scale: ``alpha / r`` (see :func:`lora_scale`).
      seen: optional set that collects the module paths actually intercepted (checked by
        :func:`lora_apply_loss`: a layer the model never calls through a matching module would
        otherwise be silently left out).

    Example:
      >>> with nn.intercept_methods(lora_interceptor(plan, trainable["lora"], 1.0)):  # doctest: +SKIP
      ...     logits = model(ids, params=params).logits
    """
    modules = _lora_modules(plan)

    def interceptor(next_fun, args, kwargs, context):
        y = next_fun(*args, **kwargs)
        if context.method_name != "__call__":
            return y
        path = "/".join(context.module.path)
        ms = modules.get(path)
        if ms is None:
            return y
        x = args[0] if args else kwargs["inputs"]  # Dense and FlaxConv1D: __call__(self, inputs)
        updates = [(x @ factors[m.name]["A"]) @ factors[m.name]["B"] for m in ms]
        update = updates[0] if len(updates) == 1 else jnp.concatenate(updates, axis=-1)
        if seen is not None:
            seen.add(path)
        return y + (scale * update).astype(y.dtype)

    return interceptor


def lora_apply_loss(plan: Plan, scale: float) -> Callable[..., tuple[Array, Any]]:
    """LoRA's unmerged forward: ``(loss_fn, trainable, frozen, sparsity, batch, dropout_rng) -> (loss, aux)``.

    Runs ``loss_fn`` on the frozen params (plus the head) under :func:`lora_interceptor`, so the
    model computes ``x @ W0 + scale * (x @ A) @ B`` in each planned layer. Equal to ``loss_fn`` on
    :func:`lora`'s ``effective_params`` (merged kernels) up to float rounding, but its gradient never
    forms a ``(d_in, d_out)`` matrix. Raises ``ValueError`` (at trace time) if a planned layer was
    not intercepted.
    """
    modules = _lora_modules(plan)

    def apply_loss(loss_fn: LossFn, trainable: Trainable, frozen: FlatParams, sparsity: Array, batch: Batch, rng):
        seen: set[str] = set()
        params = unflatten({**frozen, **trainable["head"]})
        with nn.intercept_methods(lora_interceptor(plan, trainable["lora"], scale, seen)):
            out = loss_fn(params, batch, rng)
        missing = sorted(set(modules) - seen)
        if missing:
            raise ValueError(
                f"LoRA: {len(missing)} planned layer(s) were never called as a module at their param path, "
                f"e.g. {missing[0]!r} (remat/scan layers or a renamed module?)"
            )
        return out

    return apply_loss


def lora(plan: Plan, rank: int = 8, alpha: float | None = None, train_head: bool = True) -> Method:
    """LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022).

    The pretrained weights are frozen and each matrix of the plan (the ones PST sparsifies; LoRA's
    paper adapts only ``W_q, W_v``) gets a low-rank update ``W0 + (alpha / r) * A @ B`` (see
    :func:`init_lora_factors`; no LoRA dropout). ``trainable = {"lora": {matrix name: {"A", "B"}},
    "head": head params}``; nothing is pruned.

    ``effective_params`` returns the *merged* kernels ``W0 + scale * A @ B``: the deployable model of
    the original architecture (what :func:`~pst_jax.methods.base.export_model` writes) and, with today's
    train step, a correct but not memory-optimal forward (the gradient of each merged kernel is a full
    ``(d_in, d_out)`` matrix). The unmerged forward, :func:`lora_apply_loss`, is attached as the
    method's ``apply_loss``: the train step uses it, evaluation and export use the merged kernels.

    Example:
      >>> method = lora(make_plan(model.params, BERT_RULES), rank=8)  # doctest: +SKIP
    """
    scale = lora_scale(rank, alpha)

    def init(key: Array, params: Params):
        head, frozen = split_head(params, plan, train_head)
        keys = jax.random.split(key, len(plan.matrices))
        factors = {
            m.name: init_lora_factors(k, m.d_in, m.d_out, rank) for k, m in zip(keys, plan.matrices, strict=True)
        }
        return {"lora": factors, "head": head}, frozen

    def effective_params(trainable: Trainable, frozen: FlatParams, sparsity: Array):
        flat = {**frozen, **trainable["head"]}
        factors = trainable["lora"]
        # In float32 even where W0 is stored in bfloat16: a bfloat16 sum would round a small A @ B away.
        merged = map_matrices(
            flat, plan, lambda m, w: at_least_float32(w) + scale * factors[m.name]["A"] @ factors[m.name]["B"]
        )
        return unflatten({**flat, **merged})

    return Method(
        "lora", init, effective_params, sparse=False, groups=("lora", "head"), apply_loss=lora_apply_loss(plan, scale)
    )
