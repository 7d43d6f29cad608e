"""The radix-select top-k mask against a stable sort, ties and special values included."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pst_jax import keep_mask, prune_count, topk_mask
from pst_jax.core.topk import keep_masks, kth_smallest_key, sortable_keys, topk_masks


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


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_grouped_masks_match_stable_sort_per_matrix(sparsity):
    """Same-shape matrices share one select: a group where only some matrices have partial ties at the
    threshold (one cond for the whole stack), a group without ties, and a lone matrix of another dtype."""
    rng = np.random.default_rng(7)
    scores = [
        rng.standard_normal((37, 53)).astype(np.float32),
        rng.integers(0, 5, (37, 53)).astype(np.float32),  # partial ties at every threshold
        rng.standard_normal((11, 20)).astype(np.float32),
        np.full((37, 53), 0.25, np.float32),  # one run of ties: all pruned or all kept but the last
        rng.standard_normal((11, 20)).astype(np.float32),
        rng.standard_normal((37, 53)).astype(np.float32),
    ]
    bf16 = jnp.asarray(rng.standard_normal((37, 53)), jnp.bfloat16)
    got = jax.jit(keep_masks)([jnp.asarray(x) for x in scores] + [bf16], sparsity)
    expected = [reference_keep(x, sparsity) for x in scores] + [reference_keep(np.asarray(bf16, np.float32), sparsity)]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        np.testing.assert_array_equal(np.asarray(g), e)


def test_grouped_straight_through_gradient_is_identity():
    rng = np.random.default_rng(0)
    scores = [jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in ((5, 6), (5, 6), (3, 2))]
    g = [jnp.asarray(rng.standard_normal(x.shape), jnp.float32) for x in scores]

    def loss(s, p):
        return sum(jnp.sum(gi * mi) for gi, mi in zip(g, topk_masks(s, p), strict=True))

    masks = topk_masks(scores, jnp.float32(0.6))
    assert [m.dtype for m in masks] == [jnp.float32] * 3
    for m, x in zip(masks, scores, strict=True):
        np.testing.assert_array_equal(np.asarray(m), reference_keep(np.asarray(x), 0.6).astype(np.float32))
    grad_scores, grad_sparsity = jax.grad(loss, argnums=(0, 1))(scores, jnp.float32(0.6))
    for got, want in zip(grad_scores, g, strict=True):
        np.testing.assert_array_equal(got, want)
    assert grad_sparsity == 0.0
