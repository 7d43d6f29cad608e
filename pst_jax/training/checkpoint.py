"""Checkpoints for resume: what training changes, saved with orbax (async, atomic), restored bit for bit.

A checkpoint holds the :class:`~pst_jax.training.step.TrainState` (trainable groups, optimizer state, step,
dropout key), the model selection's kept parameters when there are any, and the host's :class:`Progress`
(the step that drives the sparsity schedule, the epoch and batch within it, the shuffle generator's state at
the epoch's start, the epoch's losses so far, every evaluation record, the selection's record). Never the
frozen pretrained weights: a PST checkpoint is a few percent of the model.

orbax writes each checkpoint into a temporary folder and renames it when complete, so a kill during a save
leaves the previous checkpoint as the latest.

Example::

    checkpoints = Checkpoints(Path("runs/x/checkpoints"))
    state, progress, kept = checkpoints.restore(state) or (state, Progress(), None)
    ...
    checkpoints.save(state, progress)
    checkpoints.close()
"""

import dataclasses
import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pst_jax.training.step import TrainState

logger = logging.getLogger("pst_jax")


@dataclasses.dataclass
class Progress:
    """Where training is, on the host: what a resumed run needs besides the device state."""

    step: int = 0  # steps taken: drives the sparsity schedule
    epoch: int = 1  # the epoch in progress (the number of epochs + 1 once all are done)
    batch: int = 0  # batches of that epoch already trained
    shuffle: dict[str, Any] | None = None  # the shuffle generator's state at that epoch's start
    losses: list[float] = dataclasses.field(default_factory=list)  # that epoch's losses so far
    records: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # every evaluation so far
    kept: dict[str, Any] | None = None  # the model selection's record; its params are saved beside

    def next_epoch(self, shuffle: np.random.Generator) -> None:
        """Moves to the start of the next epoch, whose shuffle starts from ``shuffle``'s current state."""
        self.epoch, self.batch, self.losses = self.epoch + 1, 0, []
        self.shuffle = shuffle.bit_generator.state


def _orbax() -> Any:
    """``orbax.checkpoint``, imported when first needed: after a launcher has configured logging (importing
    orbax logs through absl, which otherwise configures the root logger with Python's default format)."""
    import orbax.checkpoint as ocp

    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax logs every save at INFO
    return ocp


class Checkpoints:
    """The checkpoints of one run in ``directory`` (the last ``max_to_keep`` are kept)."""

    def __init__(self, directory: Path, max_to_keep: int = 2) -> None:
        ocp = _orbax()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=True)
        self.directory = directory.absolute()
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, state: TrainState, progress: Progress, kept: Any = None) -> None:
        """Starts saving (the write finishes in the background); ``kept``: the selection's params, if any."""
        ocp = _orbax()
        items = {"state": ocp.args.StandardSave(state), "progress": ocp.args.JsonSave(dataclasses.asdict(progress))}
        if kept is not None:
            items["kept"] = ocp.args.StandardSave(kept)
        if progress.step in self.manager.all_steps():  # an epoch's end on a step already saved mid-epoch
            self.manager.wait_until_finished()
            self.manager.delete(progress.step)
        self.manager.save(progress.step, args=ocp.args.Composite(**items), force=True)

    def restore(self, state: TrainState) -> tuple[TrainState, Progress, Any] | None:
        """``(state, progress, kept params or None)`` of the latest checkpoint, or ``None`` without one.

        ``state`` is the fresh state: its structure, shapes, dtypes and shardings are the restored ones'.
        """
        step = self.manager.latest_step()
        if step is None:
            return None
        ocp = _orbax()
        items = {
            "state": ocp.args.StandardRestore(jax.tree.map(ocp.utils.to_shape_dtype_struct, state)),
            "progress": ocp.args.JsonRestore(),
        }
        has_kept = (self.directory / str(step) / "kept").exists()
        if has_kept:  # host arrays, shaped like the trainable groups
            items["kept"] = ocp.args.StandardRestore(
                jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), state.trainable)
            )
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        progress = Progress(**restored["progress"])
        return restored["state"], progress, restored["kept"] if has_kept else None

    def latest_bytes(self) -> int:
        """Bytes on disk of the latest checkpoint (0 without one); waits for a save in flight."""
        self.manager.wait_until_finished()
        step = self.manager.latest_step()
        if step is None:
            return 0
        return sum(f.stat().st_size for f in (self.directory / str(step)).rglob("*") if f.is_file())

    def close(self) -> None:
        """Waits for the save in flight, then releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()
