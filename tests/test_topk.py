"""The top-k masks against a stable sort (NumPy's), by both selects: radix and bisection; ties and special values."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pst_jax import keep_mask, prune_count, topk_mask
from pst_jax.core.topk import (
    SELECTS,
    keep_masks,
    kth_smallest_key,
    kth_smallest_key_bisect,
    resolve_select,
    sortable_keys,
    topk_masks,
)


def reference_keep(scores: np.ndarray, sparsity: float) -> np.ndarray:
    """Prune the floor(s*n) smallest, ties in increasing flat index (a stable sort)."""
    k = math.floor(sparsity * scores.size)
    keep = np.ones(scores.size, bool)
    keep[np.argsort(scores.ravel(), kind="stable")[:k]] = False
    return keep.reshape(scores.shape)


# One compiled function per select, shared by all the cases below (sparsity is traced, the shape is one).
SHAPE = (37, 53)  # 1961 entries: 0.9995 prunes all but one
KEEP = {select: jax.jit(functools.partial(keep_mask, select=select)) for select in SELECTS}
KTH = {"radix": jax.jit(kth_smallest_key), "bisect": jax.jit(kth_smallest_key_bisect, static_argnames="bits")}
SPARSITIES = [0.0, 0.1, 0.5, 0.75, 0.9, 0.99, 0.9995, 1.0]


def scores_of(kind: str) -> np.ndarray:
    rng = np.random.default_rng(sum(map(ord, kind)))
    normal = rng.standard_normal(SHAPE)
    x = {
        "normal": lambda: normal,
        "ties": lambda: rng.integers(0, 5, SHAPE).astype(float),  # huge runs of equal scores
        "two_values": lambda: rng.integers(0, 2, SHAPE).astype(float),  # a partial tie at every threshold
        "tied_threshold": lambda: np.where(rng.random(SHAPE) < 0.4, 0.0, normal),  # one run across 30%..70%
        "all_equal": lambda: np.full(SHAPE, 0.25),
        "negative": lambda: -np.abs(normal) - 3.0,
        "bf16_values": lambda: np.asarray(jnp.asarray(normal, jnp.bfloat16), np.float32),
        "tiny_range": lambda: 1.0 + 1e-6 * normal,  # keys differ only in low bits
        # NaN ranks above +inf (NumPy sorts it last too); no signed zeros: NumPy ties -0.0 with +0.0.
        "special": lambda: np.choose(rng.integers(0, 8, SHAPE), [normal] * 5 + [np.nan, np.inf, -np.inf]),
    }[kind]()
    return x.astype(np.float32)


KINDS = ["normal", "ties", "two_values", "tied_threshold", "all_equal", "negative", "bf16_values", "tiny_range"]


@pytest.mark.parametrize("select", SELECTS)
@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("kind", [*KINDS, "special"])
def test_matches_stable_sort(kind, sparsity, select):
    x = scores_of(kind)
    got = np.asarray(KEEP[select](x, sparsity))
    np.testing.assert_array_equal(got, reference_keep(x, sparsity))


@pytest.mark.parametrize("select", SELECTS)
@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_bfloat16_scores_match_stable_sort_of_the_same_values(sparsity, select):
    """bfloat16 input (8 bits of mantissa: many ties, partial at most thresholds) against NumPy's stable sort."""
    x = jnp.asarray(scores_of("normal"), jnp.bfloat16)
    values = np.asarray(x, np.float32)  # exact: every bfloat16 is a float32
    assert len(np.unique(values)) < 0.6 * values.size  # ~half the entries tie with another
    np.testing.assert_array_equal(np.asarray(KEEP[select](x, sparsity)), reference_keep(values, sparsity))


def test_special_values_order():
    x = np.array([np.inf, -0.0, 0.0, -np.inf, 1e-38, -1e-38, 3.0, -3.0], np.float32)
    keys = np.asarray(sortable_keys(jnp.asarray(x)))
    np.testing.assert_array_equal(np.argsort(keys, kind="stable"), [3, 7, 5, 1, 2, 4, 6, 0])


def keys_of(kind: str) -> np.ndarray:
    rng = np.random.default_rng(sum(map(ord, kind)))
    return {
        "random": lambda: rng.integers(0, 2**32, 1000, dtype=np.uint64),
        "ties": lambda: rng.integers(0, 8, 1000),
        # The bisection's edges: answers 0 (no bit set) and 0xFFFFFFFF (every bit set).
        "extremes": lambda: rng.choice([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF], 1000),
        "all_zero": lambda: np.zeros(1000),
        "all_max": lambda: np.full(1000, 0xFFFFFFFF),
    }[kind]().astype(np.uint32)


@pytest.mark.parametrize("select", SELECTS)
@pytest.mark.parametrize("k", [1, 2, 500, 999, 1000])
@pytest.mark.parametrize("kind", ["random", "ties", "extremes", "all_zero", "all_max"])
def test_kth_smallest_key(kind, k, select):
    keys = keys_of(kind)
    kth, below, equal = KTH[select](jnp.asarray(keys), jnp.int32(k))
    sorted_keys = np.sort(keys)
    assert kth == sorted_keys[k - 1]
    assert below == np.sum(sorted_keys < sorted_keys[k - 1])
    assert equal == np.sum(sorted_keys == sorted_keys[k - 1])


@pytest.mark.parametrize("k", [1, 2, 150, 299])
def test_bisect_over_index_bits(k):
    """The tie split's search: indices of 1000 entries (10 bits), the others 0xFFFFFFFF."""
    tied = np.random.default_rng(3).random(1000) < 0.3
    keys = np.where(tied, np.arange(1000), 0xFFFFFFFF).astype(np.uint32)
    kth, below, equal = KTH["bisect"](jnp.asarray(keys), jnp.int32(k), bits=10)
    assert (kth, below, equal) == (np.flatnonzero(tied)[k - 1], k - 1, 1)


def test_prune_count_is_floor():
    for n in (1, 7, 128, 589_824, 2_359_296):
        for s in (0.0, 0.1, 0.5, 0.75, 0.9):
            assert int(prune_count(s, n)) == math.floor(s * n), (s, n)


@pytest.mark.parametrize("select", SELECTS)
def test_straight_through_gradient_is_identity(select):
    scores = jnp.asarray(np.random.default_rng(0).standard_normal((5, 6)), jnp.float32)
    g = jnp.asarray(np.random.default_rng(1).standard_normal((5, 6)), jnp.float32)
    grad_scores, grad_sparsity = jax.grad(lambda s, p: jnp.sum(g * topk_mask(s, p, select)), argnums=(0, 1))(
        scores, jnp.float32(0.6)
    )
    np.testing.assert_array_equal(grad_scores, g)
    assert grad_sparsity == 0.0


keep_masks_jit = jax.jit(keep_masks, static_argnames="select")


@pytest.mark.parametrize("select", SELECTS)
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.9995])
def test_grouped_masks_match_stable_sort_per_matrix(sparsity, select):
    """Same-shape matrices share one select: a group where only some matrices have partial ties at the
    threshold (one cond for the whole stack), a group without ties, and a lone matrix of another dtype."""
    rng = np.random.default_rng(7)
    scores = [
        rng.standard_normal(SHAPE).astype(np.float32),
        rng.integers(0, 5, SHAPE).astype(np.float32),  # partial ties at every threshold
        rng.standard_normal((11, 20)).astype(np.float32),
        np.full(SHAPE, 0.25, np.float32),  # one run of ties: all pruned or all kept but the last
        rng.standard_normal((11, 20)).astype(np.float32),
        rng.standard_normal(SHAPE).astype(np.float32),
    ]
    bf16 = jnp.asarray(rng.standard_normal(SHAPE), jnp.bfloat16)
    got = keep_masks_jit([jnp.asarray(x) for x in scores] + [bf16], sparsity, select=select)
    expected = [reference_keep(x, sparsity) for x in scores] + [reference_keep(np.asarray(bf16, np.float32), sparsity)]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        np.testing.assert_array_equal(np.asarray(g), e)


@pytest.mark.parametrize("select", SELECTS)
def test_grouped_straight_through_gradient_is_identity(select):
    rng = np.random.default_rng(0)
    scores = [jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in ((5, 6), (5, 6), (3, 2))]
    g = [jnp.asarray(rng.standard_normal(x.shape), jnp.float32) for x in scores]

    def loss(s, p):
        return sum(jnp.sum(gi * mi) for gi, mi in zip(g, topk_masks(s, p, select), strict=True))

    masks = topk_masks(scores, jnp.float32(0.6), select)
    assert [m.dtype for m in masks] == [jnp.float32] * 3
    for m, x in zip(masks, scores, strict=True):
        np.testing.assert_array_equal(np.asarray(m), reference_keep(np.asarray(x), 0.6).astype(np.float32))
    grad_scores, grad_sparsity = jax.grad(loss, argnums=(0, 1))(scores, jnp.float32(0.6))
    for got, want in zip(grad_scores, g, strict=True):
        np.testing.assert_array_equal(got, want)
    assert grad_sparsity == 0.0


def lowered(fn) -> str:
    """StableHLO text of ``fn`` over two same-shape matrices and a third of another shape (a stacked group)."""
    x = jnp.zeros(SHAPE, jnp.float32)
    return jax.jit(fn).lower([x, x, jnp.zeros((11, 20), jnp.bfloat16)]).as_text()


def test_bisection_lowers_without_scatter_or_sort():
    by_select = {s: lowered(lambda xs, s=s: keep_masks(xs, 0.5, select=s)) for s in SELECTS}
    assert "stablehlo.scatter" in by_select["radix"]  # so the assertion below can fail
    assert "scatter" not in by_select["bisect"]
    assert "stablehlo.sort" not in by_select["bisect"]


@pytest.mark.parametrize(("backend", "select"), [("cpu", "radix"), ("tpu", "bisect"), ("gpu", "bisect")])
def test_select_follows_the_backend(backend, select, monkeypatch):
    """None picks by ``jax.default_backend()`` at trace time, through the two-argument public API."""
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    assert resolve_select(None) == select
    assert resolve_select("radix") == "radix" and resolve_select("bisect") == "bisect"
    text = lowered(lambda xs: [topk_mask(xs[0], 0.5), *topk_masks(xs[1:], jnp.float32(0.5))])
    assert ("scatter" in text) == (select == "radix")


def test_unknown_select_is_refused():
    with pytest.raises(ValueError, match="unknown select 'sort'; choose from radix, bisect or None"):
        keep_mask(jnp.zeros(3), 0.5, select="sort")
