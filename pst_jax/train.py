"""Jitted, mesh-sharded train and eval steps for PST fine-tuning.

The state splits the model in two:

* ``state.trainable = {"pst": factors, "head": {path: array}}``: the only tree that is
  differentiated and stepped (the head group is empty when ``train_head=False``);
* ``frozen``: every other parameter (pretrained kernels ``W0`` included), a flat
  ``{path: array}`` dict passed to each step and never donated, copied or differentiated.

Example (see ``tests/test_train.py`` for a complete run)::

    plan = make_plan(model.params, rules_for(model.config.model_type))
    tx = make_optimizer(3e-5, total_steps)
    state, frozen = init_train_state(key, model.params, plan, tx, mesh=mesh)
    step = jit_train_step(make_train_step(classification_loss(model), plan, tx), mesh)
    for t, batch in enumerate(batches):
        state, metrics = step(state, frozen, shard_batch(batch, mesh), schedule(t))
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from pst_jax.config import PSTConfig
from pst_jax.losses import LossFn
from pst_jax.pst import check_sparsity
from pst_jax.rules import Plan, flatten
from pst_jax.sharding import replicate, replicated
from pst_jax.tree import export, init_pst, merge
from pst_jax.types import Array, Batch, FlatParams, Params


class TrainState(NamedTuple):
    """Everything a train step updates. ``step`` counts optimizer steps taken."""

    step: Array
    trainable: dict[str, Any]
    opt_state: optax.OptState
    dropout_rng: Array


def split_params(params: Params, plan: Plan, train_head: bool = True) -> tuple[FlatParams, FlatParams]:
    """``(head, frozen)`` flat dicts; with ``train_head=False`` the head is frozen too."""
    flat = flatten(params)
    head_paths = set(plan.paths("head")) if train_head else set()
    head = {p: v for p, v in flat.items() if p in head_paths}
    frozen = {p: v for p, v in flat.items() if p not in head_paths}
    return head, frozen


def init_train_state(
    key: Array,
    params: Params,
    plan: Plan,
    optimizer: optax.GradientTransformation,
    config: PSTConfig = PSTConfig(),
    train_head: bool = True,
    mesh: Mesh | None = None,
) -> tuple[TrainState, FlatParams]:
    """Fresh factors, optimizer state and dropout key; returns ``(state, frozen)``.

    With a ``mesh`` both are replicated over it (the state is created in place from its
    ``jax.eval_shape``, never gathered on one device first).
    """
    head, frozen = split_params(params, plan, train_head)
    factor_key, dropout_key = jax.random.split(key)

    def init(head: FlatParams) -> TrainState:
        trainable = {"pst": init_pst(factor_key, plan, config), "head": head}
        return TrainState(jnp.zeros((), jnp.int32), trainable, optimizer.init(trainable), dropout_key)

    if mesh is None:
        return jax.jit(init)(head), frozen
    shardings = jax.tree.map(lambda _: replicated(mesh), jax.eval_shape(init, head))
    return jax.jit(init, out_shardings=shardings)(head), replicate(frozen, mesh)


def effective_params(
    trainable: dict[str, Any], frozen: FlatParams, sparsity: Array | float, plan: Plan, config: PSTConfig = PSTConfig()
) -> dict[str, Any]:
    """The params to feed the model: frozen weights, trained head, masked adapted kernels."""
    return merge({**frozen, **trainable["head"]}, trainable["pst"], sparsity, plan, config)


def make_train_step(
    loss_fn: LossFn, plan: Plan, optimizer: optax.GradientTransformation, config: PSTConfig = PSTConfig()
) -> Callable[[TrainState, FlatParams, Batch, Array], tuple[TrainState, dict[str, Array]]]:
    """The pure step ``(state, frozen, batch, sparsity) -> (state, metrics)``; jit it with :func:`jit_train_step`.

    The dropout key of step ``t`` is ``fold_in(state.dropout_rng, t)``: it does not depend on
    how the batch is sharded, so 1 and 8 devices compute the same step.
    """

    def train_step(state: TrainState, frozen: FlatParams, batch: Batch, sparsity: Array):
        dropout_rng = jax.random.fold_in(state.dropout_rng, state.step)

        def objective(trainable):
            return loss_fn(effective_params(trainable, frozen, sparsity, plan, config), batch, dropout_rng)

        (loss, _), grads = jax.value_and_grad(objective, has_aux=True)(state.trainable)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.trainable)
        trainable = optax.apply_updates(state.trainable, updates)
        metrics = {"loss": loss, "sparsity": sparsity, "grad_norm": optax.global_norm(grads)}
        return TrainState(state.step + 1, trainable, opt_state, state.dropout_rng), metrics

    return train_step


def make_eval_step(
    loss_fn: LossFn, plan: Plan, config: PSTConfig = PSTConfig()
) -> Callable[[dict[str, Any], FlatParams, Batch, Array], tuple[Array, dict[str, Array]]]:
    """The pure step ``(trainable, frozen, batch, sparsity) -> (loss, aux)``, dropout off."""

    def eval_step(trainable, frozen, batch, sparsity):
        return loss_fn(effective_params(trainable, frozen, sparsity, plan, config), batch, None)

    return eval_step


def _with_float_sparsity(compiled: Callable) -> Callable:
    def call(*args):
        *rest, sparsity = args
        check_sparsity(sparsity)
        # One dtype whatever the caller passes (Python float, NumPy, jax array): no retrace.
        return compiled(*rest, jnp.asarray(sparsity, jnp.float32))

    return call


def jit_train_step(train_step: Callable, mesh: Mesh | None = None) -> Callable:
    """Jits a train step, donating the state; on a ``mesh`` the new state stays replicated."""
    out_shardings = None if mesh is None else replicated(mesh)
    return _with_float_sparsity(jax.jit(train_step, donate_argnums=0, out_shardings=out_shardings))


def jit_eval_step(eval_step: Callable) -> Callable:
    """Jits an eval step (outputs keep the batch's sharding)."""
    return _with_float_sparsity(jax.jit(eval_step))


def export_model(
    state: TrainState, frozen: FlatParams, sparsity: float, plan: Plan, config: PSTConfig = PSTConfig()
) -> dict[str, Any]:
    """The deployable params (host arrays, factors dropped) at ``sparsity``; see :func:`pst_jax.tree.export`."""
    return export({**frozen, **state.trainable["head"]}, state.trainable["pst"], sparsity, plan, config)
