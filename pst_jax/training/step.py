"""Jitted, mesh-sharded train and eval steps, shared by every fine-tuning method.

A :class:`~pst_jax.methods.base.Method` splits the model in two:

* ``state.trainable``: a dict of named groups (PST: ``{"pst": factors, "head": {path: array}}``),
  the only tree that is differentiated and stepped;
* ``frozen``: every other parameter (pretrained kernels ``W0`` included), a flat ``{path: array}``
  dict passed to each step and never donated, copied or differentiated.

Example (see ``tests/test_train.py`` for a complete run)::

    method = methods.pst(make_plan(model.params, rules_for(model.config.model_type)))
    tx = make_optimizer(method, 3e-5, total_steps)
    state, frozen = init_train_state(key, model.params, method, tx, mesh=mesh)
    step = jit_train_step(make_train_step(classification_loss(model), method, tx), mesh)
    for t, batch in enumerate(batches):
        state, metrics = step(state, frozen, shard_batch(batch, mesh), schedule(t))
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from pst_jax.core.pst import check_sparsity
from pst_jax.core.types import Array, Batch, FlatParams, LossFn, Params
from pst_jax.methods.base import Method
from pst_jax.training.sharding import param_shardings, replicated


class TrainState(NamedTuple):
    """Everything a train step updates. ``step`` counts optimizer steps taken."""

    step: Array
    trainable: dict[str, Any]
    opt_state: optax.OptState
    dropout_rng: Array


def init_train_state(
    key: Array,
    params: Params,
    method: Method,
    optimizer: optax.GradientTransformation,
    mesh: Mesh | None = None,
) -> tuple[TrainState, FlatParams]:
    """The method's trainable groups, their optimizer state and a dropout key; returns ``(state, frozen)``.

    With a ``mesh`` both are sharded over its ``fsdp`` axis by
    :func:`~pst_jax.training.sharding.param_shardings` (replicated when ``fsdp=1``); the params are placed
    shard by shard and the state is created in place from its ``jax.eval_shape``, never gathered on one
    device first.
    """
    init_key, dropout_key = jax.random.split(key)

    def init(params: Params) -> tuple[TrainState, FlatParams]:
        trainable, frozen = method.init(init_key, params)
        state = TrainState(jnp.zeros((), jnp.int32), trainable, optimizer.init(trainable), dropout_key)
        return state, frozen

    if mesh is None:
        return jax.jit(init)(params)
    shardings = param_shardings(jax.eval_shape(init, params), mesh)
    params = jax.device_put(params, param_shardings(params, mesh))  # each device gets its shards only
    return jax.jit(init, out_shardings=shardings)(params)


def make_train_step(
    loss_fn: LossFn, method: Method, optimizer: optax.GradientTransformation
) -> Callable[[TrainState, FlatParams, Batch, Array], tuple[TrainState, dict[str, Array]]]:
    """The pure step ``(state, frozen, batch, sparsity) -> (state, metrics)``; jit it with :func:`jit_train_step`.

    The dropout key of step ``t`` is ``fold_in(state.dropout_rng, t)``: it does not depend on
    how the batch is sharded, so 1 and 8 devices compute the same step. ``metrics["loss"]`` is the
    task loss; the method's regularizer, if any, is added to what is differentiated.
    """

    def train_step(state: TrainState, frozen: FlatParams, batch: Batch, sparsity: Array):
        dropout_rng = jax.random.fold_in(state.dropout_rng, state.step)

        def objective(trainable):
            if method.apply_loss is None:
                loss, _ = loss_fn(method.effective_params(trainable, frozen, sparsity), batch, dropout_rng)
            else:
                loss, _ = method.apply_loss(loss_fn, trainable, frozen, sparsity, batch, dropout_rng)
            if method.regularizer is not None:
                return loss + method.regularizer(trainable, sparsity), loss
            return loss, loss

        (_, loss), grads = jax.value_and_grad(objective, has_aux=True)(state.trainable)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.trainable)
        trainable = optax.apply_updates(state.trainable, updates)
        metrics = {
            "loss": loss,
            "sparsity": sparsity,
            "grad_norm": optax.global_norm(grads),
            "grad_norms": {group: optax.global_norm(g) for group, g in grads.items()},
        }
        return TrainState(state.step + 1, trainable, opt_state, state.dropout_rng), metrics

    return train_step


def make_eval_step(
    loss_fn: LossFn, method: Method
) -> Callable[[dict[str, Any], FlatParams, Batch, Array], tuple[Array, dict[str, Array]]]:
    """The pure step ``(trainable, frozen, batch, sparsity) -> (loss, aux)``, dropout off."""

    def eval_step(trainable, frozen, batch, sparsity):
        return loss_fn(method.effective_params(trainable, frozen, sparsity), batch, None)

    return eval_step


def _with_float_sparsity(compiled: Callable) -> Callable:
    def call(*args):
        *rest, sparsity = args
        check_sparsity(sparsity)
        # One dtype whatever the caller passes (Python float, NumPy, jax array): no retrace.
        return compiled(*rest, jnp.asarray(sparsity, jnp.float32))

    call.jitted = compiled  # for .lower(...).compile(): memory analysis, cost analysis
    return call


def jit_train_step(train_step: Callable, mesh: Mesh | None = None, state_shardings: Any = None) -> Callable:
    """Jits a train step, donating the state; on a ``mesh`` the new state keeps ``state_shardings`` (default:
    replicated) and the metrics are replicated."""
    if mesh is None:
        return _with_float_sparsity(jax.jit(train_step, donate_argnums=0))
    out_shardings = (replicated(mesh) if state_shardings is None else state_shardings, replicated(mesh))
    return _with_float_sparsity(jax.jit(train_step, donate_argnums=0, out_shardings=out_shardings))


def jit_eval_step(eval_step: Callable) -> Callable:
    """Jits an eval step (outputs keep the batch's sharding)."""
    return _with_float_sparsity(jax.jit(eval_step))
