"""The pruning baselines PST is compared against, as :class:`~pst_jax.methods.base.Method` factories.

Each shares PST's training loop, schedule, sharding and export, and sparsifies the same matrices (those
of the :class:`~pst_jax.core.rules.Plan`), each on its own (no global ranking):

* :func:`magnitude`: magnitude pruning (MaP), mask = top-k of ``|W|``, all weights trained;
* :func:`movement`: movement pruning (MvP), one trainable score per weight, straight-through top-k;
* :func:`soft_movement`: soft movement pruning, ``sigmoid(scores) > tau`` plus an L1 penalty on the
  scores: the sparsity it reaches is driven by the penalty, not exact.

They follow Hugging Face's reference code of the movement-pruning paper
(``examples/research_projects/movement-pruning``: ``masked_run_glue.py``, ``emmental``); where the
port differs from it, the factory's docstring says so.

Layouts: every mask and score is a ``(d_in, d_out)`` matrix read with
:func:`~pst_jax.core.rules.read_matrix`, so GPT-2's ``(d_out, d_in)`` kernels and its fused ``c_attn``
(three matrices, three masks) are handled as in PST.
"""

import functools
import re
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from pst_jax.core.model import masked_matrices, read_matrices, rewrite_matrices
from pst_jax.core.rules import Plan, flatten, unflatten
from pst_jax.core.topk import keep_masks, kth_smallest, sortable_keys, topk_masks
from pst_jax.core.types import Array, FlatParams, Params
from pst_jax.methods.base import Method, Trainable

#: The reference's soft-movement floor: at least ``int(0.005 * numel) + 1`` weights of a matrix are kept.
REFERENCE_MIN_KEEP = 0.005
#: Paths the reference movement-pruning code keeps frozen (``MaskedBertModel`` freezes its embeddings);
#: pass it as ``freeze=`` to the pruning baselines to reproduce that (BERT / RoBERTa).
REFERENCE_FROZEN = r"(^|/)embeddings/"

#: ``{name: W} -> {name: scores}`` of the planned matrices.
ScoresFn = Callable[[dict[str, Array]], dict[str, Array]]
#: ``(score matrices, sparsity) -> masks``, e.g. :func:`~pst_jax.core.topk.topk_masks`.
MasksFn = Callable[[list[Array], Array], list[Array]]


# --- shared helpers ------------------------------------------------------------------------------------------------


class WeightSplit(NamedTuple):
    """What :func:`split_weights` returns: two flat ``{path: array}`` dicts."""

    trained: FlatParams
    frozen: FlatParams


def split_weights(params: Params, freeze: str | None) -> WeightSplit:
    """``(trained, frozen)`` flat dicts: paths matching the ``freeze`` regex (if any) are frozen."""
    flat = flatten(params)
    if freeze is None:
        return WeightSplit(flat, {})
    regex = re.compile(freeze)
    trained = {p: v for p, v in flat.items() if not regex.search(p)}
    return WeightSplit(trained, {p: v for p, v in flat.items() if regex.search(p)})


def _masked_kernels(flat: FlatParams, plan: Plan, scores_of: ScoresFn, masks_fn: MasksFn, sparsity: Array):
    """Every sparsified kernel with each of its matrices ``W`` replaced by ``M * W``, ``M`` from its scores."""
    return rewrite_matrices(flat, plan, lambda ws: masked_matrices(ws, scores_of(ws), sparsity, masks_fn).weights)


def _masks(flat: FlatParams, plan: Plan, scores_of: ScoresFn, masks_fn: MasksFn, sparsity: Array):
    ws = read_matrices(flat, plan)
    return masked_matrices(ws, scores_of(ws), sparsity, masks_fn).masks


def _zero_scores(plan: Plan) -> dict[str, Array]:
    # The reference's default `mask_init="constant", mask_scale=0.0`.
    return {m.name: jnp.zeros((m.d_in, m.d_out), jnp.float32) for m in plan.matrices}


def _scores_method(
    name: str,
    plan: Plan,
    freeze: str | None,
    masks_fn: MasksFn,
    regularizer: Callable[[Trainable, Array], Array] | None = None,
) -> Method:
    """A method training the weights and one score per planned weight; ``M = masks_fn(scores, sparsity)``."""

    def init(key: Array, params: Params):
        weights, frozen = split_weights(params, freeze)
        return {"weights": weights, "scores": _zero_scores(plan)}, frozen

    def effective_params(trainable: Trainable, frozen: FlatParams, sparsity: Array):
        flat = {**frozen, **trainable["weights"]}
        flat.update(_masked_kernels(flat, plan, lambda ws: trainable["scores"], masks_fn, sparsity))
        return unflatten(flat)

    def masks(trainable: Trainable, frozen: FlatParams, sparsity: Array):
        flat = {**frozen, **trainable["weights"]}
        return _masks(flat, plan, lambda ws: trainable["scores"], masks_fn, sparsity)

    return Method(
        name,
        init,
        effective_params,
        sparse=True,
        groups=("weights", "scores"),
        regularizer=regularizer,
        masks=masks,
    )


# --- magnitude pruning -----------------------------------------------------------------------------------------------


def magnitude(plan: Plan, freeze: str | None = None) -> Method:
    """Magnitude pruning (MaP; Han et al., NeurIPS 2015), the movement-pruning paper's baseline.

    All weights are trained (``trainable = {"weights": flat params}``; paths matching the ``freeze``
    regex stay in ``frozen``). Each sparsified matrix is masked by the top-k of ``|W|`` of the *current*
    weights, recomputed every step, pruning exactly ``floor(s * numel)`` entries. The mask carries no
    gradient (the reference's ``MagnitudeBinarizer`` overwrites every entry with a constant), so
    ``dL/dW = G * M`` with ``G = dL/d(M * W)``: a pruned weight gets no gradient (Adam's momentum
    may still move it, so it can come back).

    Example:
      >>> method = magnitude(make_plan(model.params, BERT_RULES))  # doctest: +SKIP
    """

    def magnitudes(ws: dict[str, Array]) -> dict[str, Array]:
        return {name: jnp.abs(lax.stop_gradient(w)) for name, w in ws.items()}

    def init(key: Array, params: Params):
        weights, frozen = split_weights(params, freeze)
        return {"weights": weights}, frozen

    def effective_params(trainable: Trainable, frozen: FlatParams, sparsity: Array):
        flat = {**frozen, **trainable["weights"]}
        flat.update(_masked_kernels(flat, plan, magnitudes, keep_masks, sparsity))
        return unflatten(flat)

    def masks(trainable: Trainable, frozen: FlatParams, sparsity: Array):
        return _masks({**frozen, **trainable["weights"]}, plan, magnitudes, keep_masks, sparsity)

    return Method("magnitude", init, effective_params, sparse=True, groups=("weights",), masks=masks)


# --- movement pruning ------------------------------------------------------------------------------------------------


def movement(plan: Plan, freeze: str | None = None) -> Method:
    """Movement pruning (MvP; Sanh, Wolf & Rush, "Movement Pruning", NeurIPS 2020).

    ``trainable = {"weights": flat params, "scores": {matrix name: (d_in, d_out)}}``. The mask is the
    straight-through top-k of the scores (exactly ``floor(s * numel)`` pruned per matrix) and the
    effective kernel is ``M * W``: ``dL/dW = G * M`` and ``dL/dScores = G * W``, so under gradient
    descent the scores accumulate ``-W * dL/dW`` (weights moving away from zero gain importance).

    Scores start at zero, the reference's default (``mask_init="constant"``, ``mask_scale=0.0``). All
    scores then tie, which is harmless with the paper's schedule: the sparsity is 0 during the dense
    warm-up (the reference's ``initial_threshold=1.0``, keep everything), and by the first pruning step
    the scores have accumulated ``-W * G`` and no longer tie. If pruning starts at step 0, the exact
    top-k prunes tied scores lowest flat index first (row-major over ``(d_in, d_out)``); the reference's
    ``torch.sort(descending=True)`` gives no order guarantee for ties. Two more small differences from the
    reference's ``TopKBinarizer``: it keeps ``int((1 - s) * numel)`` (so prunes up to one more entry
    than ``floor(s * numel)``), and it gives the scores their own learning rate (``1e-2`` in its
    commands): use :func:`~pst_jax.training.optim.make_optimizer`'s ``scores_learning_rate``.

    The reference freezes the embeddings (``freeze=REFERENCE_FROZEN``); by default every weight is
    trained, as the PST paper counts movement pruning's trainable parameters.

    Example:
      >>> method = movement(make_plan(model.params, BERT_RULES))  # doctest: +SKIP
    """
    return _scores_method("movement", plan, freeze, topk_masks)


# --- soft movement pruning -------------------------------------------------------------------------------------------


def _threshold_keep(scores: Array, threshold: Array, min_keep: float | None) -> Array:
    """``sigmoid(scores) > threshold``; the top ``int(min_keep * numel) + 1`` scores if fewer survive."""
    keep = jax.nn.sigmoid(scores) > threshold
    if min_keep is None:
        return keep
    n = scores.size
    n_min = int(min_keep * n) + 1

    def floor_keep(_):
        # As the reference: threshold at the (n - n_min)-th smallest score (1-based), keep what is strictly above.
        keys = sortable_keys(scores).ravel()
        kth, _, _ = kth_smallest(keys, jnp.int32(max(n - n_min, 1)))  # by backend, as the masks
        return (keys > kth).reshape(scores.shape)

    return lax.cond(jnp.sum(keep, dtype=jnp.int32) < n_min, floor_keep, lambda _: keep, None)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def threshold_mask(scores: Array, threshold: Array, min_keep: float | None = REFERENCE_MIN_KEEP) -> Array:
    """0/1 mask ``sigmoid(scores) > threshold`` (scores' dtype) with a straight-through gradient.

    The reference's ``ThresholdBinarizer(sigmoid=True)``: the mask's cotangent reaches ``scores``
    unchanged (not through the sigmoid). If fewer than ``int(min_keep * numel) + 1`` entries survive,
    those with the highest scores are kept instead (the reference's 0.5% floor; ``None`` disables it).

    Example:
      >>> threshold_mask(jnp.array([-3.0, 0.0, 3.0]), jnp.float32(0.1)).tolist()
      [0.0, 1.0, 1.0]
    """
    return _threshold_keep(scores, threshold, min_keep).astype(scores.dtype)


def _threshold_mask_fwd(scores, threshold, min_keep):
    return threshold_mask(scores, threshold, min_keep), jnp.zeros_like(threshold)


def _threshold_mask_bwd(min_keep, zero_threshold, g):
    return g, zero_threshold


threshold_mask.defvjp(_threshold_mask_fwd, _threshold_mask_bwd)


def soft_threshold(
    sparsity: Array | float, final_sparsity: float, final_threshold: float = 0.1, initial_threshold: float = 0.0
) -> Array:
    """The reference's threshold ``tau`` at the point of the schedule where the sparsity is ``sparsity``.

    The reference moves ``tau`` from ``initial_threshold`` to ``final_threshold`` along the same cubic
    schedule as our sparsity (``0`` to ``final_sparsity``), so ``tau`` is affine in it:
    ``tau = final + (initial - final) * (1 - sparsity / final_sparsity)``; with the default
    ``initial_threshold=0``, ``tau = final_threshold * sparsity / final_sparsity``.

    Example:
      >>> round(float(soft_threshold(0.45, final_sparsity=0.9, final_threshold=0.1)), 6)
      0.05
    """
    remaining = 1.0 - jnp.asarray(sparsity, jnp.float32) / final_sparsity
    return final_threshold + (initial_threshold - final_threshold) * remaining


def soft_movement(
    plan: Plan,
    final_sparsity: float,
    final_threshold: float = 0.1,
    final_lambda: float = 400.0,
    initial_threshold: float = 0.0,
    min_keep: float | None = REFERENCE_MIN_KEEP,
    freeze: str | None = None,
) -> Method:
    """Soft movement pruning (Sanh, Wolf & Rush, "Movement Pruning", NeurIPS 2020).

    Trainable tree as :func:`movement` (scores start at zero). The mask of a matrix is
    ``sigmoid(scores) > tau`` (the reference's ``pruning_method="sigmoied_threshold"``, i.e.
    ``scores > logit(tau)``) with a straight-through gradient (``dScores = G * W``), and the method's
    regularizer is the reference's ``"l1"`` penalty ``lambda * mean_m(mean(sigmoid(scores_m)))`` (the
    mean over matrices of each matrix's mean). The sparsity reached is whatever the penalty drives
    the scores to, not exact; see :func:`threshold_mask` for the reference's 0.5% floor.

    Mapping of the ``sparsity`` argument (the project's cubic schedule, from 0 to ``final_sparsity``)
    to the reference's ``schedule_threshold``, which moves ``tau`` from ``initial_threshold`` to
    ``final_threshold`` along the same cubic curve and sets ``lambda = final_lambda * tau /
    final_threshold``: ``tau`` is :func:`soft_threshold` of the sparsity, and ``lambda`` follows from it.
    With the defaults (the reference's soft-movement command: ``initial_threshold 0``,
    ``final_threshold 0.1``, ``final_lambda 400``) both ramp linearly with the sparsity, from 0 at
    sparsity 0 (everything kept, no penalty) to their final values at ``final_sparsity``. Pass the
    ``final_sparsity`` of the schedule that drives training (its ``initial`` must be 0), and export at
    ``final_sparsity`` to apply the final threshold.

    Example:
      >>> method = soft_movement(make_plan(model.params, BERT_RULES), final_sparsity=0.9)  # doctest: +SKIP
    """
    if not 0.0 < final_sparsity < 1.0:
        raise ValueError(f"final_sparsity must be in (0, 1), got {final_sparsity}")
    if final_threshold <= 0.0:
        raise ValueError(f"final_threshold must be > 0, got {final_threshold}")

    def tau(sparsity: Array) -> Array:
        return soft_threshold(sparsity, final_sparsity, final_threshold, initial_threshold)

    def score_masks(scores: list[Array], sparsity: Array) -> list[Array]:
        return [threshold_mask(s, tau(sparsity), min_keep) for s in scores]

    def regularizer(trainable: Trainable, sparsity: Array) -> Array:
        regu_lambda = final_lambda * tau(sparsity) / final_threshold
        per_matrix = [jnp.mean(jax.nn.sigmoid(s)) for s in trainable["scores"].values()]
        return regu_lambda * jnp.mean(jnp.stack(per_matrix))

    return _scores_method("soft_movement", plan, freeze, score_masks, regularizer)
