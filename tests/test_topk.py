"""The radix-select top-k mask against a stable sort, ties and special values included."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pst_jax import keep_mask, prune_count, topk_mask
from pst_jax.topk import kth_smallest_key, sortable_keys


def reference_keep(scores: np.ndarray, sparsity: float) -> np.ndarray:
    """Prune the floor(s*n) smallest, ties in increasing flat index (a stable sort)."""
    k = math.floor(sparsity * scores.size)
    keep = np.ones(scores.size, bool)
    keep[np.argsort(scores.ravel(), kind="stable")[:k]] = False
    return keep.reshape(scores.shape)


keep_jit = jax.jit(keep_mask)


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.75, 0.9, 0.99])
@pytest.mark.parametrize("kind", ["normal", "ties", "all_equal", "negative", "bf16", "tiny_range"])
def test_matches_stable_sort(kind, sparsity):
    rng = np.random.default_rng(abs(hash(kind)) % 2**32)
    shape = (37, 53)
    x = {
        "normal": lambda: rng.standard_normal(shape),
        "ties": lambda: rng.integers(0, 5, shape).astype(float),  # huge runs of equal scores
        "all_equal": lambda: np.full(shape, 0.25),
        "negative": lambda: -np.abs(rng.standard_normal(shape)) - 3.0,
        "bf16": lambda: np.asarray(jnp.asarray(rng.standard_normal(shape), jnp.bfloat16), np.float32),
        "tiny_range": lambda: 1.0 + 1e-6 * rng.standard_normal(shape),  # keys differ only in low bits
    }[kind]().astype(np.float32)
    got = np.asarray(keep_jit(x, sparsity))
    np.testing.assert_array_equal(got, reference_keep(x, sparsity))


def test_special_values_order():
    x = np.array([np.inf, -0.0, 0.0, -np.inf, 1e-38, -1e-38, 3.0, -3.0], np.float32)
    keys = np.asarray(sortable_keys(jnp.asarray(x)))
    np.testing.assert_array_equal(np.argsort(keys, kind="stable"), [3, 7, 5, 1, 2, 4, 6, 0])


@pytest.mark.parametrize("k", [1, 2, 500, 999, 1000])
def test_kth_smallest_key(k):
    x = np.random.default_rng(k).standard_normal(1000).astype(np.float32)
    keys = sortable_keys(jnp.asarray(x))
    kth, below, equal = jax.jit(kth_smallest_key)(keys, jnp.int32(k))
    sorted_keys = np.sort(np.asarray(keys))
    assert kth == sorted_keys[k - 1]
    assert below == np.sum(sorted_keys < sorted_keys[k - 1])
    assert equal == np.sum(sorted_keys == sorted_keys[k - 1])


def test_prune_count_is_floor():
    for n in (1, 7, 128, 589_824, 2_359_296):
        for s in (0.0, 0.1, 0.5, 0.75, 0.9):
            assert int(prune_count(s, n)) == math.floor(s * n), (s, n)


def test_straight_through_gradient_is_identity():
    scores = jnp.asarray(np.random.default_rng(0).standard_normal((5, 6)), jnp.float32)
    g = jnp.asarray(np.random.default_rng(1).standard_normal((5, 6)), jnp.float32)
    grad_scores, grad_sparsity = jax.grad(lambda s, p: jnp.sum(g * topk_mask(s, p)), argnums=(0, 1))(
        scores, jnp.float32(0.6)
    )
    np.testing.assert_array_equal(grad_scores, g)
    assert grad_sparsity == 0.0
