"""Data parallelism with ``jax.jit`` over a 1-D ``Mesh``: batches split on ``'data'``, state replicated."""

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``'data'`` over ``devices`` (default: all devices, every host).

    The axis type is ``Auto``: Hugging Face's Flax BERT fails under ``Explicit`` axes.
    """
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of parameters and optimizer state: a full copy on every device."""
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding of a batch: split along its leading (batch) axis."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of ``tree`` on all devices of ``mesh``."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch: dict[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
    """Splits a host batch (this process's rows) across the devices of ``mesh``.

    The global batch size must divide evenly by the number of devices.
    """
    sharding = data_sharded(mesh)
    per_process = mesh.devices.size // jax.process_count()
    out = {}
    for name, value in batch.items():
        value = np.asarray(value)
        if value.shape[0] % per_process:
            raise ValueError(
                f"batch field {name!r} has {value.shape[0]} rows, not divisible by the "
                f"{per_process} local devices of the mesh; pick a batch size that is"
            )
        if jax.process_count() == 1:
            out[name] = jax.device_put(value, sharding)
        else:
            out[name] = jax.make_array_from_process_local_data(sharding, value)
    return out
