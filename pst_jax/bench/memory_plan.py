"""The memory plan: per-device bytes of a method's compiled train step on a mesh, with nothing allocated.

The model's params, the method's state and the batch exist only as shapes (``jax.eval_shape``) carrying the
mesh's shardings (:func:`~pst_jax.training.sharding.param_shardings`); the step is lowered and compiled for
them and XLA's memory analysis says what each device holds: arguments (frozen weights, trainable state,
batch), temporaries (activations, gradients, masks) and outputs. A user sees before renting a pod whether a
model fits at ``fsdp=F``.

Example::

    plan = plan_step("gpt2-medium", "pst", make_mesh(fsdp=8), batch_size=8, seq_len=512)
    print(plan["per_device_gib"])
"""

from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from pst_jax.bench.models import CAUSAL_FAMILIES, abstract_params, model_config, unbuilt_model
from pst_jax.core.rules import make_plan, rules_for
from pst_jax.methods.base import with_frozen_dtype
from pst_jax.methods.registry import make_method
from pst_jax.training.losses import causal_lm_loss, classification_loss
from pst_jax.training.optim import make_optimizer
from pst_jax.training.sharding import data_sharded, param_shardings, replicated
from pst_jax.training.step import TrainState, make_train_step


def _abstract(tree: Any, mesh: Mesh) -> Any:
    """``tree``'s shapes and dtypes with the mesh's shardings of its leaves."""
    shardings = param_shardings(tree, mesh)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def _model(model_name: str, dtype: str, remat: bool) -> tuple[Any, Any, bool]:
    """``(model, loss_fn, causal)``: the unbuilt model computing in ``dtype``, its loss, whether it is a causal LM."""
    model = unbuilt_model(model_config(model_name), dtype=jnp.dtype(dtype), remat=remat)
    causal = model.config.model_type in CAUSAL_FAMILIES
    return model, causal_lm_loss(model) if causal else classification_loss(model), causal


def plan_step(
    model_name: str,
    method_name: str,
    mesh: Mesh,
    batch_size: int,
    seq_len: int,
    rank: int = 8,
    dtype: str = "float32",
    remat: bool = False,
) -> dict[str, Any]:
    """Per-device bytes of ``method_name``'s train step for ``model_name`` on ``mesh`` (see the module docstring).

    ``dtype`` is both the compute dtype and the storage of the frozen matrices (``--dtype`` and ``--frozen_dtype``
    of the experiments); trainable parameters and the optimizer state stay float32. ``remat`` recomputes each
    decoder layer in the backward pass instead of keeping its activations.
    """
    model, loss_fn, causal = _model(model_name, dtype, remat)
    params = abstract_params(model, seq_len)
    method = make_method(method_name, make_plan(params, rules_for(model.config.model_type)), lora_rank=rank)
    method = with_frozen_dtype(method, jnp.dtype(dtype))
    optimizer = make_optimizer(method, 1e-4, 1000)

    def init(params: Any) -> tuple[TrainState, Any]:
        trainable, frozen = method.init(jax.random.key(0), params)
        return TrainState(jnp.zeros((), jnp.int32), trainable, optimizer.init(trainable), jax.random.key(1)), frozen

    state, frozen = (_abstract(tree, mesh) for tree in jax.eval_shape(init, params))
    rows = jax.ShapeDtypeStruct((batch_size, seq_len), jnp.int32, sharding=data_sharded(mesh))
    batch = {"input_ids": rows, "attention_mask": rows}
    if not causal:
        batch["labels"] = jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=data_sharded(mesh))
    step = jax.jit(
        make_train_step(loss_fn, method, optimizer),
        donate_argnums=0,
        out_shardings=(jax.tree.map(lambda x: x.sharding, state), replicated(mesh)),
    )
    memory = step.lower(state, frozen, batch, jax.ShapeDtypeStruct((), jnp.float32)).compile().memory_analysis()
    parts = {
        "arguments": memory.argument_size_in_bytes,
        "temporaries": memory.temp_size_in_bytes,
        "outputs": memory.output_size_in_bytes,
        "aliased": memory.alias_size_in_bytes,
    }
    total = parts["arguments"] + parts["temporaries"] + parts["outputs"] - parts["aliased"]
    setup = {"model": model_name, "method": method_name, "mesh": dict(mesh.shape), "dtype": dtype, "remat": remat}
    return {**setup, "bytes": parts, "total": total}
