"""PST over a whole model: init all factors, merge them into effective params, export.

These functions take a parameter tree (nested or flat), the :class:`~pst_jax.rules.Plan` of the
model and the factors keyed by matrix name, and return ordinary parameter trees to feed
``module.apply`` / ``model(..., params=...)``.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pst_jax.config import PSTConfig
from pst_jax.pst import check_sparsity, init_factors, mask, masked_kernel
from pst_jax.rules import Matrix, Plan, flatten, read_matrix, unflatten, write_kernel
from pst_jax.types import Array, Factors, Masks, Params


def init_pst(key: Array, plan: Plan, config: PSTConfig = PSTConfig(), dtype=jnp.float32) -> Factors:
    """Initial factors of every matrix of ``plan``, keyed by matrix name.

    Example:
      >>> factors = init_pst(jax.random.key(0), plan)          # doctest: +SKIP
      >>> factors["bert/encoder/layer/0/attention/self/query/kernel"]["U"].shape  # doctest: +SKIP
      (768, 8)
    """
    keys = jax.random.split(key, len(plan.matrices))
    return {m.name: init_factors(k, m.d_in, m.d_out, config, dtype) for k, m in zip(keys, plan.matrices, strict=False)}


def map_matrices(params: Params, plan: Plan, fn: Callable[[Matrix, Array], Array]) -> dict[str, Array]:
    """Every sparsified kernel with each of its ``(d_in, d_out)`` matrices ``w`` replaced by ``fn(m, w)``.

    The one place that reads matrices out of stored kernels and writes them back (layouts, fused parts);
    PST and the baselines only say what happens to one matrix.
    """
    flat = flatten(params)
    return {
        path: write_kernel((fn(m, read_matrix(flat[path], m)) for m in ms), ms[0].layout)
        for path, ms in plan.by_kernel().items()
    }


def sparse_kernels(
    params: Params, factors: Factors, sparsity: Array | float, plan: Plan, config: PSTConfig = PSTConfig()
) -> dict[str, Array]:
    """The masked adapted kernel of every sparsified path, in its stored layout."""
    return map_matrices(params, plan, lambda m, w: masked_kernel(w, factors[m.name], sparsity, config))


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
    flat = flatten(params)
    return {m.name: mask(read_matrix(flat[m.path], m), factors[m.name], sparsity, config) for m in plan.matrices}


def export(
    params: Params, factors: Factors, sparsity: float, plan: Plan, config: PSTConfig = PSTConfig()
) -> dict[str, Any]:
    """The deployable model: effective params at ``sparsity`` as host NumPy arrays, factors dropped.

    Pruned entries are exactly zero; the tree has the original architecture's structure, so
    ``model.save_pretrained(path, params=export(...))`` writes an ordinary checkpoint.
    """
    check_sparsity(sparsity)
    merged = jax.jit(lambda p, f, s: merge(p, f, s, plan, config))(params, factors, sparsity)
    return jax.tree.map(np.asarray, jax.device_get(merged))


def kernel_sparsity(params: Params, plan: Plan) -> dict[str, float]:
    """Fraction of exact zeros of every sparsified matrix of ``params``, keyed by matrix name."""
    flat = flatten(params)
    return {m.name: float(jnp.mean(read_matrix(jnp.asarray(flat[m.path]), m) == 0)) for m in plan.matrices}
