"""The training loop the experiments share: epochs of jitted steps, the sparsity schedule, timing, a progress bar."""

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from pst_jax.training.checkpoint import Progress
from pst_jax.training.errors import Diverged
from pst_jax.training.interrupts import StopRequests
from pst_jax.training.phases import Phases
from pst_jax.training.processes import is_writer
from pst_jax.training.profiling import StepTimer
from pst_jax.training.sharding import shard_batch
from pst_jax.training.step import TrainState


class TrainLoop:
    """Runs ``train_step`` over host batches until ``total_steps``, one epoch per :meth:`epoch` call.

    Step ``t`` trains at ``schedule(t)``. ``progress`` (a fresh or a restored
    :class:`~pst_jax.training.checkpoint.Progress`) counts the steps and the epoch's batches and collects its
    losses. Every ``save_every`` steps the loop calls ``save(state)``; when ``stop`` has a request (SIGTERM,
    SIGINT) it returns after the step in flight. :attr:`timer` holds each step's time (see :meth:`epoch`);
    ``phases`` gets the time spent compiling and saving checkpoints.

    Example::

        loop = TrainLoop(train_step, frozen, mesh, schedule, lr_at, total_steps, "sst2 pst", Progress())
        with loop:
            for epoch in range(1, epochs + 1):
                state, stopped = loop.epoch(state, batches(...))
    """

    def __init__(
        self,
        train_step: Callable,
        frozen: Any,
        mesh: Mesh,
        schedule: Callable[[int], float],
        lr_at: Callable[[int], Any],
        total_steps: int,
        description: str,
        progress: Progress,
        save: Callable[[TrainState], None] | None = None,
        save_every: int = 0,
        stop: StopRequests | None = None,
        phases: Phases | None = None,
    ) -> None:
        self.train_step, self.frozen, self.mesh = train_step, frozen, mesh
        self.schedule, self.lr_at, self.total_steps = schedule, lr_at, total_steps
        self.progress, self.save, self.save_every, self.stop = progress, save, save_every, stop
        self.phases = phases or Phases()
        self.finished = progress.step  # steps whose loss has been read
        self.last_finite: tuple[int, float] | None = None  # (step, loss) of the last finite step
        self._done = 0.0  # when the last step finished (or, before an epoch's first, when it was dispatched)
        self.timer = StepTimer()
        self.bar = tqdm(
            total=total_steps,
            initial=progress.step,
            desc=description,
            unit="step",
            dynamic_ncols=True,
            disable=not is_writer(),  # one bar for a multi-process run
        )

    def __enter__(self) -> "TrainLoop":
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    @property
    def step(self) -> int:
        """Steps taken so far (restored ones included)."""
        return self.progress.step

    @property
    def local_device(self) -> jax.Device:
        """This process's first device of the mesh (whose memory the cost record reports)."""
        return next(d for d in self.mesh.devices.flat if d.process_index == jax.process_index())

    @property
    def sparsity(self) -> float:
        """The schedule's sparsity after the steps taken so far (what an evaluation now uses)."""
        return self.schedule(self.step)

    def epoch(self, state: TrainState, batches: Iterable[dict[str, Any]]) -> tuple[TrainState, bool]:
        """Steps over ``batches`` (stopping at ``total_steps``); returns the new state and whether a stop was
        requested (the state is then the last step's, every loss read).

        Step ``t + 1`` is dispatched before step ``t``'s loss is read, so the host prepares and dispatches
        the next batch while the device runs; at a save, every loss is read first (a checkpoint never
        holds a state past a non-finite loss). A step's time is the gap between two finished steps; a gap
        in which a new batch width compiled is left out of the median.
        """
        pending = None  # (loss, batch, whether its own interval holds a compile) of the last dispatched step
        for batch in batches:
            sparsity = self.schedule(self.step)
            sharded = shard_batch(batch, self.mesh)
            compiles = self.timer.see(sharded)
            if compiles:  # a new batch width: compile ahead (cached for the call below), timed as its own phase
                with self.phases("compile"):
                    self.train_step.jitted.lower(state, self.frozen, sharded, np.float32(sparsity)).compile()
            if pending is None:
                self._done = time.perf_counter()
            state, metrics = self.train_step(state, self.frozen, sharded, sparsity)  # a new width: traced again
            if pending is not None:
                self._finish(pending, compiled=pending[2] or compiles)
            pending = (metrics, sharded, compiles and pending is None)  # first of the epoch: own compile
            self.progress.step += 1
            self.progress.batch += 1
            self._show(sparsity)
            stopping = self.stop is not None and self.stop.at(self.step)
            saving = self.save is not None and self.save_every and self.step % self.save_every == 0
            if stopping or saving:
                self._finish(pending, compiled=pending[2])
                pending = None
                if stopping:
                    return state, True
                with self.phases("checkpoints"):
                    self.save(state)
            if self.step >= self.total_steps:
                break
        if pending is not None:
            self._finish(pending, compiled=pending[2])
        return state, False

    def _show(self, sparsity: float) -> None:
        self.bar.update(1)
        if self.step % 10 == 0 or self.step == self.total_steps:
            lr = float(self.lr_at(self.step))
            losses = self.progress.losses
            last = f"{losses[-1]:.4f}" if losses else "..."
            self.bar.set_postfix(loss=last, sparsity=f"{sparsity:.3f}", lr=f"{lr:.2e}")

    def _finish(self, pending: tuple, compiled: bool) -> None:
        """Waits for a dispatched step (reading its loss and gradient norm) and records the time since the
        previous one finished.

        Raises:
          Diverged: the step's loss or gradient norm is not finite.
        """
        metrics, batch, _ = pending
        loss, grad_norm = (float(v) for v in jax.device_get((metrics["loss"], metrics["grad_norm"])))
        self.finished += 1
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            raise Diverged(self.finished, loss, grad_norm, self.last_finite)
        self.last_finite = (self.finished, loss)
        self.progress.losses.append(loss)
        now = time.perf_counter()
        self.timer.add(now - self._done, batch, compiled)
        self._done = now

    def cost(self, state: TrainState, sparsity: float) -> dict[str, Any]:
        """The ``cost`` record of ``results.json``: step times, and the memory of the step compiled at the
        widest batch (the jit cache holds it, so nothing recompiles); step times and memory are ``None`` when
        this process took no step (a run resumed after its last one)."""
        if self.timer.largest is None:  # resumed after the last step: nothing was measured in this process
            return self.timer.cost(None, self.local_device)
        compiled = self.train_step.jitted.lower(state, self.frozen, self.timer.largest[1], np.float32(sparsity))
        return self.timer.cost(compiled.compile(), self.local_device)

    def write(self, line: str) -> None:
        """Prints ``line`` above the progress bar (process 0 only)."""
        if is_writer():
            self.bar.write(line)
