"""The run skeleton every experiment shares: what a run is built from, and its epochs.

:func:`setup_run` turns a :class:`~pst_jax.training.method_config.MethodConfig` and a model's params into
everything a run trains with (method, sparsity schedule, optimizer, learning-rate function, initial state,
frozen weights, jitted train and eval steps); :func:`train_epochs` runs the epochs with one
:class:`~pst_jax.training.loop.TrainLoop`, asks the task to evaluate after each, and appends every record to
``metrics.jsonl``. The tasks (GLUE, data-to-text) only say how to batch and how to evaluate.
"""

import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from pst_jax.core.rules import Plan
from pst_jax.core.types import LossFn, Params
from pst_jax.methods.base import Method
from pst_jax.training.checkpoint import Checkpoints, Progress
from pst_jax.training.errors import Interrupted
from pst_jax.training.interrupts import StopRequests
from pst_jax.training.loop import TrainLoop
from pst_jax.training.method_config import MethodConfig, build_method, sparsity_schedule
from pst_jax.training.optim import learning_rate_schedule, make_optimizer
from pst_jax.training.phases import Phases
from pst_jax.training.run_folder import RunFolder, write_lines
from pst_jax.training.sharding import to_host
from pst_jax.training.step import (
    TrainState,
    init_train_state,
    jit_eval_step,
    jit_train_step,
    make_eval_step,
    make_train_step,
)

logger = logging.getLogger("pst_jax")


class RunSetup(NamedTuple):
    """What a run trains with (see :func:`setup_run`)."""

    method: Method
    schedule: Callable[[int], float]  # step -> sparsity
    target: float  # the final sparsity (0 for methods that do not prune)
    lr_at: Callable[[int], Any]  # step -> the factors' learning rate
    state: TrainState
    frozen: Any
    train_step: Callable
    eval_step: Callable
    mesh: Mesh
    total_steps: int


class Evaluation(NamedTuple):
    """A task's evaluation after an epoch: the record's fields and the line printed for it."""

    fields: dict[str, Any]
    text: str


class Trained(NamedTuple):
    """What :func:`train_epochs` returns: the final state, every evaluation record, wall time, step cost and
    the bytes of a checkpoint."""

    state: TrainState
    records: list[dict[str, Any]]
    wall_time_s: float
    cost: dict[str, Any]
    checkpoint_bytes: int


class Selection:
    """Model selection: the evaluation with the highest ``score(record)`` among those at the target
    sparsity (the paper's), with a host copy of its trainable params; restored with a checkpoint."""

    def __init__(self, score: Callable[[dict[str, Any]], float]) -> None:
        self.score = score
        self.best: dict[str, Any] | None = None
        self.trainable: Any = None

    def keep(self, record: dict[str, Any], state: TrainState) -> None:
        """Keeps ``record`` (and its trainable params) if it is the best at target sparsity so far."""
        if record["at_target_sparsity"] and (self.best is None or self.score(record) > self.score(self.best)):
            self.best, self.trainable = record, to_host(state.trainable)

    def result(self, trained: Trained) -> tuple[dict[str, Any], Any, str]:
        """``(record, trainable, how it was selected)``; the last evaluation when none was at target sparsity
        (e.g. ``--final_warmup 0`` with a run cut short)."""
        if self.best is None:
            return trained.records[-1], to_host(trained.state.trainable), "last evaluation"
        return self.best, self.trainable, "best evaluation at target sparsity"


def setup_run(
    cfg: MethodConfig,
    params: Params,
    plan: Plan,
    loss_fn: LossFn,
    mesh: Mesh,
    total_steps: int,
    *,
    learning_rate: float,
    eval_loss_fn: LossFn | None = None,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
) -> RunSetup:
    """Builds the method ``cfg`` names over ``plan``, its schedule, optimizer and jitted steps, and the state.

    The initial state is drawn from ``jax.random.key(cfg.seed)``; ``eval_loss_fn`` (default ``loss_fn``) is
    the evaluation's loss, e.g. without label smoothing.

    Example::

        setup = setup_run(cfg, model.params, plan, classification_loss(model), make_mesh(), 1000,
                          learning_rate=cfg.learning_rate)
        state, metrics = setup.train_step(setup.state, setup.frozen, shard_batch(batch, setup.mesh), 0.0)
    """
    method = build_method(cfg, plan)
    schedule, target = sparsity_schedule(cfg, method, total_steps)
    optimizer = make_optimizer(
        method, learning_rate, total_steps, warmup_steps, weight_decay, scores_learning_rate=cfg.scores_learning_rate
    )
    lr_at = learning_rate_schedule(learning_rate, total_steps, warmup_steps)
    state, frozen = init_train_state(jax.random.key(cfg.seed), params, method, optimizer, mesh)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    train_step = jit_train_step(make_train_step(loss_fn, method, optimizer), mesh, shardings)
    eval_step = jit_eval_step(make_eval_step(eval_loss_fn or loss_fn, method))
    return RunSetup(method, schedule, target, lr_at, state, frozen, train_step, eval_step, mesh, total_steps)


def train_steps(epochs: float, max_steps: int | None, steps_per_epoch: int) -> tuple[int, int]:
    """A run's steps and the epochs they touch: ``max_steps`` if given, else ``epochs`` passes of
    ``steps_per_epoch`` rounded down (at least 1 step; ``epochs`` may be a fraction, 1.8: 80% of a second pass).

    Example:
      >>> train_steps(1.8, None, 368), train_steps(0.29, None, 100), train_steps(2, 5, 368)
      ((662, 2), (29, 1), (5, 1))
    """
    total = max_steps or max(1, math.floor(epochs * steps_per_epoch + 1e-9))  # 0.29 * 100 is 28.999...: still 29
    return total, math.ceil(total / steps_per_epoch)


class Schedule(NamedTuple):
    """How :func:`train_epochs` walks the data: epochs of ``batches(shuffle)``, the shuffle generator's seed,
    and how often to save a checkpoint."""

    epochs: int
    batches: Callable[[np.random.Generator], Iterable[dict[str, Any]]]
    seed: int
    checkpoint_every: int


def train_epochs(
    setup: RunSetup,
    schedule: Schedule,
    evaluate: Callable[[TrainState, float], Evaluation],
    folder: RunFolder,
    description: str,
    selection: Selection | None = None,
    phases: Phases | None = None,
) -> Trained:
    """Trains ``schedule.epochs`` epochs (stopping at ``setup.total_steps``), evaluating after each; resumes
    from the latest checkpoint in ``folder`` if there is one.

    Each epoch draws its batches from ``schedule.batches(shuffle)``. After it, ``evaluate(state, sparsity)``
    gives the task's fields; the record ``{epoch, step, sparsity, train_loss, **fields, elapsed_s}``
    (``elapsed_s``: seconds of training in this process, this evaluation included) is appended to
    ``metrics.jsonl`` and handed to ``selection``. A checkpoint is saved every ``schedule.checkpoint_every``
    steps and after every evaluation. ``phases`` (if given) gets the time of the steps, compiling, evaluations
    and checkpoints.

    Raises:
      Interrupted: SIGTERM or SIGINT arrived; the last step's checkpoint is saved.
      Diverged: a non-finite loss; the last checkpoint is the last good one.

    Example::

        schedule = Schedule(3, lambda rng: batches(train, 32, buckets, rng), seed=43, checkpoint_every=200)
        trained = train_epochs(setup, schedule, evaluate, folder, "sst2 pst")
        print(trained.records[-1]["train_loss"])
    """
    phases = phases or Phases()
    checkpoints = Checkpoints(folder.checkpoints)
    with phases("checkpoints"):
        state, progress, shuffle = _resume(setup, checkpoints, selection, schedule.seed)
    log_path = folder.path / "metrics.jsonl"
    if folder.writer:
        write_lines(log_path, progress.records)  # the records of the resumed steps; later ones are appended

    def save(state: TrainState) -> None:
        checkpoints.save(state, progress, selection.trainable if selection else None)

    start = time.perf_counter()
    with StopRequests() as stop, open(log_path if folder.writer else os.devnull, "a") as log:
        loop = TrainLoop(
            setup.train_step, setup.frozen, setup.mesh, setup.schedule, setup.lr_at, setup.total_steps,
            description, progress, save, schedule.checkpoint_every, stop, phases,
        )  # fmt: skip
        try:
            with loop:
                while progress.epoch <= schedule.epochs:
                    shuffle.bit_generator.state = progress.shuffle
                    batches = itertools.islice(schedule.batches(shuffle), progress.batch, None)
                    with phases("steps"):
                        state, stopped = loop.epoch(state, batches)
                    if not stopped:
                        with phases("evaluation"):
                            record = _evaluate(loop, state, evaluate, start)
                        log.write(json.dumps(record, allow_nan=False) + "\n")
                        log.flush()
                        if selection is not None:
                            selection.keep(record, state)
                            progress.kept = selection.best
                        progress.next_epoch(shuffle)
                    with phases("checkpoints"):
                        save(state)
                    if stop.requested:
                        raise Interrupted(stop.signal.name, int(stop.signal), progress.step, str(folder.checkpoints))
            with phases("compile"):  # the widest step's memory analysis: compiled already, so from the cache
                cost = loop.cost(state, setup.target)
            wall = round(time.perf_counter() - start, 1)
            return Trained(state, progress.records, wall, cost, checkpoints.latest_bytes())
        finally:
            with phases("checkpoints"):  # waits for the last asynchronous save
                checkpoints.close()


def _resume(
    setup: RunSetup, checkpoints: Checkpoints, selection: Selection | None, seed: int
) -> tuple[TrainState, Progress, np.random.Generator]:
    """The state, progress and shuffle generator to start from: the latest checkpoint's, or fresh ones."""
    shuffle = np.random.default_rng(seed)
    restored = checkpoints.restore(setup.state)
    if restored is None:
        return setup.state, Progress(shuffle=shuffle.bit_generator.state), shuffle
    state, progress, kept = restored
    logger.warning("resuming from the checkpoint of step %d in %s", progress.step, checkpoints.directory)
    if selection is not None:
        selection.best, selection.trainable = progress.kept, kept
    return state, progress, shuffle


def _evaluate(
    loop: TrainLoop, state: TrainState, evaluate: Callable[[TrainState, float], Evaluation], start: float
) -> dict[str, Any]:
    """The record of an evaluation after the epoch ``loop`` just finished (also added to its progress)."""
    progress, sparsity = loop.progress, loop.sparsity
    evaluation = evaluate(state, sparsity)
    record = {
        "epoch": progress.epoch,
        "step": progress.step,
        "sparsity": sparsity,
        "train_loss": float(np.mean(progress.losses)),
        **evaluation.fields,
        "elapsed_s": round(time.perf_counter() - start, 1),
    }
    progress.records.append(record)
    loop.write(f"epoch {progress.epoch} step {progress.step} sparsity {sparsity:.3f}: {evaluation.text}")
    return record
