"""PST over a whole model: init all factors, merge them into effective params, read their masks and sparsity.

These functions take a parameter tree (nested or flat), the :class:`~pst_jax.core.rules.Plan` of the
model and the factors keyed by matrix name, and return ordinary parameter trees to feed
``module.apply`` / ``model(..., params=...)``.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pst_jax.core.config import PSTConfig
from pst_jax.core.pst import adapted_kernel, at_least_float32, check_sparsity, importance, init_factors
from pst_jax.core.rules import Matrix, Plan, flatten, read_matrix, unflatten, write_kernel
from pst_jax.core.topk import topk_masks
from pst_jax.core.types import Array, Factors, Masks, Params


def init_pst(key: Array, plan: Plan, config: PSTConfig = PSTConfig(), dtype=jnp.float32) -> Factors:
    """Initial factors of every matrix of ``plan``, keyed by matrix name.

    Example:
      >>> from pst_jax.core.rules import BERT_RULES, make_plan
      >>> layer = {"attention": {"self": {"query": {"kernel": jnp.zeros((768, 768)), "bias": jnp.zeros(768)}}}}
      >>> plan = make_plan({"bert": {"encoder": {"layer": {"0": layer}}}}, BERT_RULES)
      >>> factors = init_pst(jax.random.key(0), plan)
      >>> factors["bert/encoder/layer/0/attention/self/query/kernel"]["U"].shape
      (768, 8)
    """
    keys = jax.random.split(key, len(plan.matrices))
    return {m.name: init_factors(k, m.d_in, m.d_out, config, dtype) for k, m in zip(keys, plan.matrices, strict=False)}


def read_matrices(params: Params, plan: Plan) -> dict[str, Array]:
    """Every planned ``(d_in, d_out)`` matrix of ``params``, keyed by matrix name."""
    flat = flatten(params)
    return {m.name: read_matrix(flat[m.path], m) for m in plan.matrices}


def rewrite_matrices(
    params: Params, plan: Plan, fn: Callable[[dict[str, Array]], dict[str, Array]]
) -> dict[str, Array]:
    """Every sparsified kernel with its matrices replaced: ``fn`` maps ``{name: matrix}`` to new matrices.

    The one place that reads matrices out of stored kernels and writes them back (layouts, fused parts).
    ``fn`` sees all matrices at once, so it can select the masks of same-shape matrices together.
    """
    new = fn(read_matrices(params, plan))
    return {path: write_kernel((new[m.name] for m in ms), ms[0].layout) for path, ms in plan.by_kernel().items()}


def map_matrices(params: Params, plan: Plan, fn: Callable[[Matrix, Array], Array]) -> dict[str, Array]:
    """Every sparsified kernel with each of its ``(d_in, d_out)`` matrices ``w`` replaced by ``fn(m, w)``."""
    return rewrite_matrices(params, plan, lambda ws: {m.name: fn(m, ws[m.name]) for m in plan.matrices})


class MaskedMatrices(NamedTuple):
    """What :func:`masked_matrices` returns, both keyed by matrix name."""

    weights: dict[str, Array]  # M * W, in float32 (or W's dtype if wider)
    masks: dict[str, Array]  # M, in the same dtype


def masked_matrices(
    weights: dict[str, Array],
    scores: dict[str, Array],
    sparsity: Array | float,
    mask_fn: Callable[[list[Array], Array], list[Array]] = topk_masks,
) -> MaskedMatrices:
    """``({name: M * W}, {name: M})`` with ``M`` the top-k mask of each matrix's scores (same shapes together).

    ``mask_fn`` maps a list of score matrices and the sparsity to their masks, as :func:`~pst_jax.core.topk.topk_masks`
    (straight-through gradient) does. A weight stored in bfloat16 is upcast before it is masked, so ``M * W`` and
    the gradient it sends to the scores (``G * W``) are float32, as every trained tree is.
    """
    check_sparsity(sparsity)
    names = list(scores)
    found = mask_fn([scores[n] for n in names], jnp.asarray(sparsity, jnp.float32))
    weights = {n: at_least_float32(weights[n]) for n in names}
    masks_ = {n: m.astype(weights[n].dtype) for n, m in zip(names, found, strict=True)}
    return MaskedMatrices({n: masks_[n] * weights[n] for n in names}, masks_)


def _pst_weights_and_scores(
    matrices: dict[str, Array], factors: Factors, config: PSTConfig
) -> tuple[dict[str, Array], dict[str, Array]]:
    adapted = {name: adapted_kernel(w, factors[name], config) for name, w in matrices.items()}
    return adapted, {name: importance(a, factors[name], config) for name, a in adapted.items()}


def sparse_kernels(
    params: Params, factors: Factors, sparsity: Array | float, plan: Plan, config: PSTConfig = PSTConfig()
) -> dict[str, Array]:
    """The masked adapted kernel of every sparsified path, in its stored layout (:func:`~pst_jax.core.pst.masked_kernel`
    of each matrix, the masks of same-shape matrices selected together)."""
    return rewrite_matrices(
        params, plan, lambda ws: masked_matrices(*_pst_weights_and_scores(ws, factors, config), sparsity).weights
    )


def merge(
    params: Params, factors: Factors, sparsity: Array | float, plan: Plan, config: PSTConfig = PSTConfig()
) -> dict[str, Any]:
    """Effective params: ``params`` with each sparsified kernel replaced by ``M * W~``.

    Differentiable with respect to ``factors`` (and to any non-sparsified leaf of ``params``).
    Returns a nested tree of the original architecture.
    """
    flat = flatten(params)
    flat.update(sparse_kernels(flat, factors, sparsity, plan, config))
    return unflatten(flat)


def masks(
    params: Params, factors: Factors, sparsity: Array | float, plan: Plan, config: PSTConfig = PSTConfig()
) -> Masks:
    """The 0/1 mask of every matrix, ``(d_in, d_out)``, keyed by matrix name."""
    return masked_matrices(*_pst_weights_and_scores(read_matrices(params, plan), factors, config), sparsity).masks


def kernel_sparsity(params: Params, plan: Plan) -> dict[str, float]:
    """Fraction of exact zeros of every sparsified matrix of ``params``, keyed by matrix name."""
    flat = flatten(params)
    return {m.name: float(jnp.mean(read_matrix(jnp.asarray(flat[m.path]), m) == 0)) for m in plan.matrices}


def measured_sparsity(params: Any, plan: Plan) -> dict[str, float | int]:
    """Mean, least and most sparsity over the planned matrices of exported ``params``."""
    measured = list(kernel_sparsity(params, plan).values())
    return {
        "mean": float(np.mean(measured)),
        "min": float(np.min(measured)),
        "max": float(np.max(measured)),
        "matrices": len(measured),
    }
