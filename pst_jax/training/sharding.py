"""Data parallelism and FSDP with ``jax.jit`` over a 2-D ``Mesh`` ``("data", "fsdp")``.

Batches are split over both axes (every device holds its own rows). Parameters and optimizer state are
sharded over ``fsdp`` by :func:`fsdp_spec` (as big_vision's ``fsdp`` rule): each array on its largest axis that
the ``fsdp`` size divides, arrays under :data:`MIN_SHARD_BYTES` replicated. With ``fsdp=1`` (the default)
everything is replicated: plain data parallelism.

Example::

    mesh = make_mesh(jax.devices(), fsdp=4)  # data = devices / 4
    frozen = jax.device_put(frozen, param_shardings(frozen, mesh))
"""

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)
#: Arrays smaller than this stay whole on every device (biases, norms, scalars): sharding them saves
#: little memory and costs a gather each.
MIN_SHARD_BYTES = 4096


def make_mesh(devices: Sequence[jax.Device] | None = None, fsdp: int = 1) -> Mesh:
    """A mesh ``("data", "fsdp")`` of shape ``(len(devices) // fsdp, fsdp)`` (default: all devices, every host).

    The axis types are ``Auto``: Hugging Face's Flax BERT fails under ``Explicit`` axes.

    Raises:
      ValueError: ``fsdp`` does not divide the number of devices.
    """
    devices = jax.devices() if devices is None else list(devices)
    if fsdp < 1 or len(devices) % fsdp:
        raise ValueError(f"fsdp={fsdp} does not divide the {len(devices)} devices")
    grid = np.asarray(devices).reshape(len(devices) // fsdp, fsdp)
    return Mesh(grid, BATCH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 2)


def parse_mesh(text: str) -> dict[str, int]:
    """``{"data": D, "fsdp": F}`` from ``"data=D,fsdp=F"`` (either may be left out: ``"fsdp=4"``).

    Example:
      >>> parse_mesh("data=2,fsdp=2")
      {'data': 2, 'fsdp': 2}

    Raises:
      ValueError: an unknown axis, a size that is not a positive integer, or a repeated axis.
    """
    sizes: dict[str, int] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in BATCH_AXES or name in sizes or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"--mesh {text!r}: expected data=D,fsdp=F with positive sizes")
        sizes[name] = int(value)
    return sizes


def mesh_from_flag(text: str | None, devices: Sequence[jax.Device]) -> Mesh:
    """The mesh ``--mesh`` asks for over ``devices`` (``None``: ``data`` = all of them, ``fsdp=1``).

    Raises:
      ValueError: a malformed flag, or sizes whose product is not the number of devices.
    """
    sizes = parse_mesh(text) if text else {}
    fsdp = sizes.get(FSDP_AXIS, 1)
    if DATA_AXIS not in sizes and len(devices) % fsdp:
        raise ValueError(f"--mesh {text}: fsdp={fsdp} does not divide the {len(devices)} devices used")
    data = sizes.get(DATA_AXIS, len(devices) // fsdp)
    if data * fsdp != len(devices):
        raise ValueError(f"--mesh {text}: data x fsdp must be the {len(devices)} devices used, got {data} x {fsdp}")
    return make_mesh(devices, fsdp)


def fsdp_spec(shape: tuple[int, ...], itemsize: int, fsdp: int) -> P:
    """The partition of an array of ``shape``: its largest axis that ``fsdp`` divides goes over ``fsdp``;
    replicated when none does, when ``fsdp == 1`` or when the array is under :data:`MIN_SHARD_BYTES`.

    Example:
      >>> fsdp_spec((768, 3072), 4, 4)
      PartitionSpec(None, 'fsdp')
      >>> fsdp_spec((768,), 4, 4)
      PartitionSpec()
    """
    if fsdp == 1 or int(np.prod(shape)) * itemsize < MIN_SHARD_BYTES:
        return P()
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % fsdp == 0:
            return P(*[FSDP_AXIS if a == axis else None for a in range(len(shape))])
    return P()


def param_shardings(tree: Any, mesh: Mesh) -> Any:
    """The sharding of every leaf of ``tree`` (arrays or ``ShapeDtypeStruct``\\ s) by :func:`fsdp_spec`."""
    fsdp = mesh.shape[FSDP_AXIS]

    def sharding(leaf: Any) -> NamedSharding:
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return replicated(mesh)  # a key: one per run
        return NamedSharding(mesh, fsdp_spec(tuple(leaf.shape), np.dtype(leaf.dtype).itemsize, fsdp))

    return jax.tree.map(sharding, tree)


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device (metrics, generation parameters)."""
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding of a batch: its leading (batch) axis split over every device of the mesh."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of ``tree`` on all devices of ``mesh``."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch: dict[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
    """Places a global host batch on ``mesh``, its rows split over every device: each process (every one
    holds the same batch) feeds its own devices their rows, so many processes build one global array.

    Raises:
      ValueError: the batch's rows do not divide evenly over the mesh's devices.
    """
    sharding = data_sharded(mesh)
    out = {}
    for name, value in batch.items():
        value = np.asarray(value)
        if value.shape[0] % mesh.devices.size:
            raise ValueError(
                f"batch field {name!r} has {value.shape[0]} rows, not divisible by the "
                f"{mesh.devices.size} devices of the mesh; pick a batch size that is"
            )
        out[name] = jax.make_array_from_callback(value.shape, sharding, lambda index, value=value: value[index])
    return out


def to_host(tree: Any) -> Any:
    """Every leaf of ``tree`` as a whole NumPy array on this host, gathered from the other processes' devices
    where it is spread over them (every process gets the same arrays)."""

    def get(leaf: Any) -> np.ndarray:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(jax.device_get(leaf))

    return jax.tree.map(get, tree)
