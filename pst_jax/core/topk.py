"""Exact per-matrix top-k masks with a straight-through gradient.

PST (like movement pruning) keeps all but the ``floor(s * numel)`` lowest-scoring entries of each
matrix, recomputed at every forward pass. Sorting every matrix on every step is the obvious cost
(85M scores a step on BERT-base). Instead we *select* the k-th smallest score exactly. Scores are
first mapped to ``uint32`` keys whose unsigned order is the float order; then one of two selects,
both linear in the matrix size, finds the k-th smallest key:

* **radix** (:func:`kth_smallest_key`): a 65,536-bin histogram of the keys' high 16 bits finds the
  bucket that holds the k-th smallest key; a second histogram of the low 16 bits, restricted to that
  bucket, finds the key itself. Two passes, each a scatter-add into a cache-sized histogram.
* **bisect** (:func:`kth_smallest_key_bisect`): the key is built bit by bit from the most significant,
  each bit by counting the keys below a candidate: 32 compare-and-count passes, no scatter and no sort.

``keep_mask(..., select=None)`` picks radix on CPU and bisect on every other backend, from
``jax.default_backend()`` at trace time (see :func:`resolve_select`; ``select="radix"`` or ``"bisect"``
forces one). On CPU a scatter-add into a histogram is cheap and radix is the faster; on TPU a scatter is
the slowest primitive, and on GPU the histogram's atomic adds contend, while the bisection's passes are
plain reductions. On 2 CPU cores (shared with other jobs) radix takes ~2 ms for a 768 x 768 matrix and
~24 ms for 768 x 3072, bisect ~6 and ~24 ms (up to 1.5x radix on 1024 x 4096), ``jnp.sort`` ~140 and
~620 ms (see ``experiments/benchmark_topk.py``).

Ties at the threshold are broken deterministically, lowest flat index pruned first (as a stable sort
would), so exactly ``floor(s * numel)`` entries are pruned whatever the scores. Such ties are common
(floats of similar magnitude collide often in a matrix of millions, bfloat16 scores collide more), so
they are resolved by a second select of the same kind, over the indices of the tied entries, not by a
cumulative sum.

A model has many matrices but few shapes (BERT-base: 72 and 3). :func:`keep_masks` and
:func:`topk_masks` stack the matrices of one shape and loop one compiled select over the stack, so a
train step compiles 3 selects instead of 72 (see README.md for the figures).
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from pst_jax.core.types import Array

_RADIX_BITS = 16
#: The selection algorithms of :func:`keep_mask`'s ``select``.
SELECTS = ("radix", "bisect")


def prune_count(sparsity: Array | float, numel: int) -> Array:
    """Number of entries pruned from a matrix of ``numel`` entries: ``floor(sparsity * numel)``.

    The product is evaluated in float32 (``sparsity`` may be a traced scalar) and clipped to
    ``[0, numel]``.

    Example:
      >>> int(prune_count(0.9, 1000))
      900
    """
    sparsity = jnp.asarray(sparsity, jnp.float32)
    k = jnp.floor(sparsity * jnp.float32(numel)).astype(jnp.int32)
    return jnp.clip(k, 0, numel)


def sortable_keys(x: Array) -> Array:
    """Maps floats to ``uint32`` keys with the same order (``-inf < ... < -0.0 < +0.0 < ... < inf``).

    Negative floats have all bits flipped, non-negative ones only the sign bit.

    Example:
      >>> [hex(int(v)) for v in sortable_keys(jnp.array([-1.0, 0.0, 1.0]))]
      ['0x407fffff', '0x80000000', '0xbf800000']
    """
    u = lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    negative = (u >> 31) == 1
    return jnp.where(negative, ~u, u | jnp.uint32(0x80000000))


def _first_reaching(counts: Array, k: Array, below: Array) -> tuple[Array, Array]:
    """First index whose running total (``below`` plus ``counts`` up to it) reaches ``k``, and the total before it."""
    running = jnp.cumsum(counts) + below
    i = jnp.sum(running < k, dtype=jnp.int32)
    return i, jnp.where(i > 0, running[jnp.maximum(i - 1, 0)], below)


def _radix_digit(keys: Array, k: Array, weights: Array | None, shift: int, below: Array):
    """One radix pass: the digit at ``shift`` of the k-th smallest key among the weighted keys.

    Returns the digit, the number of keys below its bucket (``below`` included), and the
    bucket's population. The 65,536-bin histogram is scanned as 256 rows of 256 bins: two short
    cumulative sums instead of one long one (faster to compile and to run).
    """
    digit = ((keys >> shift) & ((1 << _RADIX_BITS) - 1)).astype(jnp.int32)
    ones = jnp.ones_like(digit) if weights is None else weights.astype(jnp.int32)
    hist = jnp.zeros(1 << _RADIX_BITS, jnp.int32).at[digit].add(ones, mode="promise_in_bounds")
    side = 1 << (_RADIX_BITS // 2)
    rows = hist.reshape(side, side)
    row, below = _first_reaching(rows.sum(axis=1), k, below)
    col, below = _first_reaching(rows[row], k, below)
    return row * side + col, below, rows[row, col]


def kth_smallest_key(keys: Array, k: Array) -> tuple[Array, Array, Array]:
    """Exact k-th smallest (1-based) of flat ``uint32`` keys by a two-pass 16-bit radix select.

    Args:
      keys: flat ``uint32`` array.
      k: int32 scalar in ``[1, keys.size]``.

    Returns:
      ``(kth, n_below, n_equal)``: the k-th smallest key, how many keys are strictly below it,
      and how many equal it.

    Example:
      >>> [int(v) for v in kth_smallest_key(jnp.array([7, 3, 3, 9], jnp.uint32), jnp.int32(2))]
      [3, 0, 2]
    """
    hi, below, _ = _radix_digit(keys, k, None, _RADIX_BITS, jnp.int32(0))
    in_bucket = (keys >> _RADIX_BITS) == hi.astype(jnp.uint32)
    lo, below, n_equal = _radix_digit(keys, k, in_bucket, 0, below)
    kth = (hi.astype(jnp.uint32) << _RADIX_BITS) | lo.astype(jnp.uint32)
    return kth, below, n_equal


def kth_smallest_key_bisect(keys: Array, k: Array, bits: int = 32) -> tuple[Array, Array, Array]:
    """Exact k-th smallest (1-based) of flat ``uint32`` keys by bisection over its bits: no scatter, no sort.

    The answer is built from the most significant bit down: a bit is set if fewer than ``k`` keys lie
    below the prefix with that bit set. Each of the ``bits`` passes is one compare-and-count over the keys, a
    reduction at memory bandwidth; the passes are a ``fori_loop`` of static trip count, which XLA runs with no
    condition read back to the host (XLA:GPU included). Unrolled, it runs no faster on CPU and compiles 4x slower.

    Args:
      keys: flat ``uint32`` array.
      k: int32 scalar in ``[1, keys.size]``.
      bits: the k-th smallest key is known to be below ``2**bits``: only its low ``bits`` bits are searched
        (e.g. indices below ``2**bits``, the rest of the keys ``0xFFFFFFFF``).

    Returns:
      ``(kth, n_below, n_equal)`` as :func:`kth_smallest_key`.

    Example:
      >>> keys = jnp.array([7, 3, 3, 9], jnp.uint32)
      >>> [int(v) for v in kth_smallest_key_bisect(keys, jnp.int32(3))]
      [7, 2, 1]
    """

    def step(i, carry):
        prefix, below, upper = carry  # the k-th smallest lies in [prefix, upper bound); below / upper: keys under each
        candidate = prefix | lax.shift_left(jnp.uint32(1), jnp.uint32(bits - 1) - i.astype(jnp.uint32))
        count = jnp.sum(keys < candidate, dtype=jnp.int32)
        take = count < k
        return jnp.where(take, candidate, prefix), jnp.where(take, count, below), jnp.where(take, upper, count)

    # Keys below 2**bits (all of them when bits == 32): unused in the index search, where XLA drops it.
    upper = jnp.int32(keys.size) if bits == 32 else jnp.sum(keys < jnp.uint32(1 << bits), dtype=jnp.int32)
    kth, below, upper = lax.fori_loop(0, bits, step, (jnp.uint32(0), jnp.int32(0), upper))
    return kth, below, upper - below


def resolve_select(select: str | None = None) -> str:
    """The selection algorithm to use: ``select`` itself, or by the default backend when it is None.

    ``"radix"`` on CPU, where scatter-adds into a cache-sized histogram are cheap and 32 passes over the
    keys are not; ``"bisect"`` on every other backend. On TPU a scatter is the slowest primitive (it is
    serialised); on GPU the 65,536-bin histogram's atomic adds contend (a tail of equal digits hits one
    bin), while the bisection's passes are plain reductions at memory bandwidth. The GPU choice is by
    that reasoning, not measured here (no GPU was at hand): pass ``select`` to override it.

    Raises:
      ValueError: ``select`` is neither None nor one of :data:`SELECTS`.

    Example:
      >>> resolve_select("bisect"), resolve_select(None) in SELECTS
      ('bisect', True)
    """
    if select is None:
        return "radix" if jax.default_backend() == "cpu" else "bisect"
    if select not in SELECTS:
        raise ValueError(f"unknown select {select!r}; choose from {', '.join(SELECTS)} or None (by backend)")
    return select


def kth_smallest(keys: Array, k: Array, select: str | None = None) -> tuple[Array, Array, Array]:
    """:func:`kth_smallest_key` or :func:`kth_smallest_key_bisect`, as ``select`` says (see :func:`resolve_select`).

    Example:
      >>> [int(v) for v in kth_smallest(jnp.array([7, 3, 3, 9], jnp.uint32), jnp.int32(4), "bisect")]
      [9, 3, 1]
    """
    return (kth_smallest_key if resolve_select(select) == "radix" else kth_smallest_key_bisect)(keys, k)


def keep_mask(scores: Array, sparsity: Array | float, select: str | None = None) -> Array:
    """Boolean mask keeping all but the ``floor(sparsity * scores.size)`` smallest scores.

    Ties at the threshold are pruned in increasing flat-index order, so the count is exact.
    NaN scores rank above ``+inf`` (they are kept). Both algorithms give the same mask.

    Args:
      scores: importance scores of one matrix, any shape and float dtype.
      sparsity: fraction to prune, a scalar in ``[0, 1)``; may be traced.
      select: ``"radix"``, ``"bisect"`` or None (by backend, see :func:`resolve_select`).

    Example:
      >>> keep_mask(jnp.array([3.0, 1.0, 2.0, 1.0]), 0.5).tolist()
      [True, False, True, False]
      >>> keep_mask(jnp.array([3.0, 1.0, 2.0, 1.0]), 0.75, select="bisect").tolist()
      [True, False, False, False]
    """
    select = resolve_select(select)
    flat = sortable_keys(scores).ravel()
    k = prune_count(sparsity, flat.size)
    kth, below, n_equal = kth_smallest(flat, jnp.maximum(k, 1), select)
    ties_to_prune = k - below  # entries equal to kth that must go

    def split_ties(_):
        # A partial run of equal keys at the threshold: common in practice (floats of similar
        # magnitude collide often). Prune the first `ties_to_prune` of them in flat order: their
        # last index is itself selected among the indices of the equal keys (a cumsum over the whole
        # matrix is several times slower on CPU, and a scan on TPU). The bisection only searches the
        # bits an index can have.
        equal = flat == kth
        index = jnp.arange(flat.size, dtype=jnp.uint32)
        tied = jnp.where(equal, index, jnp.uint32(0xFFFFFFFF))
        if select == "radix":
            last, _, _ = kth_smallest_key(tied, ties_to_prune)
        else:
            last, _, _ = kth_smallest_key_bisect(tied, ties_to_prune, bits=max(flat.size - 1, 1).bit_length())
        return (flat > kth) | (equal & (index > last))

    # k == 0 keeps everything; the where() below handles it, so it must not pay for the tie path.
    no_partial_ties = (ties_to_prune == n_equal) | (k == 0)
    keep = lax.cond(no_partial_ties, lambda _: flat > kth, split_ties, None)
    keep = jnp.where(k == 0, True, keep)
    return keep.reshape(scores.shape)


def _keep_stack(scores: Array, sparsity: Array | float, select: str) -> Array:
    """:func:`keep_mask` of every matrix of a stack ``[G, ...]``: one compiled select, looped over the stack.

    A loop (``lax.map``), not ``vmap``: each matrix keeps its own ``lax.cond`` for the tie split (under
    ``vmap`` a ``cond`` runs both branches), and no batched scatter is needed (slow on CPU).
    """
    return lax.map(lambda x: keep_mask(x, sparsity, select), scores)


def keep_masks(scores: Sequence[Array], sparsity: Array | float, select: str | None = None) -> list[Array]:
    """:func:`keep_mask` of each score matrix, with matrices of one shape and dtype stacked into one select.

    BERT-base's 72 matrices have 3 shapes: 3 selects to compile instead of 72, for the same work.
    ``select`` is as in :func:`keep_mask`.

    Example:
      >>> [m.tolist() for m in keep_masks([jnp.array([3.0, 1.0]), jnp.array([0.0, 2.0])], 0.5)]
      [[True, False], [False, True]]
    """
    select = resolve_select(select)
    groups: dict[tuple, list[int]] = {}
    for i, x in enumerate(scores):
        groups.setdefault((x.shape, x.dtype), []).append(i)
    out: list[Array | None] = [None] * len(scores)
    for members in groups.values():
        if len(members) == 1:  # nothing to share: no stack to copy
            out[members[0]] = keep_mask(scores[members[0]], sparsity, select)
            continue
        stacked = _keep_stack(jnp.stack([scores[i] for i in members]), sparsity, select)
        for j, i in enumerate(members):
            out[i] = stacked[j]
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def topk_masks(scores: list[Array], sparsity: Array, select: str | None = None) -> list[Array]:
    """:func:`topk_mask` of each score matrix, same-shape matrices selected together (see :func:`keep_masks`)."""
    return [m.astype(x.dtype) for m, x in zip(keep_masks(scores, sparsity, select), scores, strict=True)]


def _topk_masks_fwd(scores, sparsity, select):
    return topk_masks(scores, sparsity, select), jnp.zeros_like(sparsity)


def _topk_masks_bwd(select, zero_sparsity, g):
    return g, zero_sparsity


topk_masks.defvjp(_topk_masks_fwd, _topk_masks_bwd)


def topk_mask(scores: Array, sparsity: Array, select: str | None = None) -> Array:
    """0/1 top-k mask of ``scores`` (dtype of ``scores``) with a straight-through gradient.

    Forward: :func:`keep_mask` as floats. Backward: the cotangent of the mask is passed to
    ``scores`` unchanged (``dM/dS = identity``), as in movement pruning and PST; ``sparsity``
    gets no gradient.

    Args:
      scores: importance scores of one matrix, any shape.
      sparsity: fraction to prune, a scalar in ``[0, 1)``; may be traced.
      select: ``"radix"``, ``"bisect"`` or None (by backend, see :func:`resolve_select`).

    Example:
      >>> topk_mask(jnp.array([0.3, -1.0, 2.0, 0.1]), 0.5).tolist()
      [1.0, 0.0, 1.0, 0.0]
    """
    return topk_masks([scores], sparsity, select)[0]
