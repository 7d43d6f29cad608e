"""Many processes, one run: ``jax.distributed`` from flags or the environment, and which process writes.

On a TPU pod slice every worker runs the same command and :func:`initialize` finds the others from the
environment (as under SLURM); elsewhere ``--coordinator_address HOST:PORT --num_processes N --process_id I``
name them. Every process reads the same files and computes the same global batches; each feeds its devices
their rows (:func:`~pst_jax.training.sharding.shard_batch`). Only process 0 writes the run folder's files.

Example::

    initialize(cfg)  # before anything else asks jax for devices
    if is_writer():
        write_json(out / "results.json", results)
"""

import dataclasses
import os

import jax

from pst_jax.training.errors import InputError
from pst_jax.training.settings import setting

_CLUSTER_ENV = ("TPU_WORKER_HOSTNAMES", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE")


@dataclasses.dataclass
class ProcessConfig:
    """Where the other processes of a multi-process run are (all three flags or none)."""

    coordinator_address: str | None = setting(None, "HOST:PORT of process 0 (with --num_processes, --process_id)")
    num_processes: int | None = setting(None, "processes in the run, one per host")
    process_id: int | None = setting(None, "this process, from 0")


def check_processes(cfg: ProcessConfig) -> None:
    """One-line :class:`InputError`\\ s for an incomplete or inconsistent set of process flags."""
    given = [cfg.coordinator_address, cfg.num_processes, cfg.process_id]
    if any(v is not None for v in given) and any(v is None for v in given):
        raise InputError("--coordinator_address, --num_processes and --process_id go together")
    if cfg.num_processes is not None:
        if cfg.num_processes < 1 or not 0 <= cfg.process_id < cfg.num_processes:
            raise InputError(
                f"--process_id must be in [0, --num_processes), got {cfg.process_id} of {cfg.num_processes}"
            )
        if ":" not in cfg.coordinator_address:
            raise InputError(f"--coordinator_address {cfg.coordinator_address} must be HOST:PORT")


def initialize(cfg: ProcessConfig) -> None:
    """Joins the run's processes: from the flags, from a TPU pod's or SLURM's environment, or not at all
    (one process). Call it before anything asks jax for its devices."""
    check_processes(cfg)
    if cfg.num_processes is not None and cfg.num_processes > 1:
        jax.distributed.initialize(cfg.coordinator_address, cfg.num_processes, cfg.process_id)
    elif cfg.num_processes is None and any(name in os.environ for name in _CLUSTER_ENV):
        jax.distributed.initialize()


def is_writer() -> bool:
    """Whether this process writes the run folder's files (process 0)."""
    return jax.process_index() == 0
