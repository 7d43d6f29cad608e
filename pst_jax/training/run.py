"""The run skeleton every experiment shares: what a run is built from, and its epochs.

:func:`setup_run` turns a :class:`~pst_jax.training.method_config.MethodConfig` and a model's params into
everything a run trains with (method, sparsity schedule, optimizer, learning-rate function, initial state,
frozen weights, jitted train and eval steps); :func:`train_epochs` runs the epochs with one
:class:`~pst_jax.training.loop.TrainLoop`, asks the task to evaluate after each, and appends every record to
``metrics.jsonl``. The tasks (GLUE, data-to-text) only say how to batch and how to evaluate.
"""

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from pst_jax.core.rules import Plan
from pst_jax.core.types import LossFn, Params
from pst_jax.methods.base import Method
from pst_jax.training.loop import TrainLoop
from pst_jax.training.method_config import MethodConfig, build_method, sparsity_schedule
from pst_jax.training.optim import learning_rate_schedule, make_optimizer
from pst_jax.training.step import (
    TrainState,
    init_train_state,
    jit_eval_step,
    jit_train_step,
    make_eval_step,
    make_train_step,
)


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
    """What :func:`train_epochs` returns: the final state, every evaluation record, wall time, step cost."""

    state: TrainState
    records: list[dict[str, Any]]
    wall_time_s: float
    cost: dict[str, Any]


def write_json(path: Path, obj: Any) -> None:
    """Writes ``obj`` as strict JSON (a non-finite number is an error, never a ``NaN`` token), atomically:
    a temporary file renamed over ``path``, so a kill leaves the old file or the new one, never a part."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


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
    train_step = jit_train_step(make_train_step(loss_fn, method, optimizer), mesh)
    eval_step = jit_eval_step(make_eval_step(eval_loss_fn or loss_fn, method))
    return RunSetup(method, schedule, target, lr_at, state, frozen, train_step, eval_step, mesh, total_steps)


def train_epochs(
    setup: RunSetup,
    epochs: int,
    epoch_batches: Callable[[], Iterable[dict[str, Any]]],
    evaluate: Callable[[TrainState, float], Evaluation],
    log_path: Path,
    description: str,
    keep: Callable[[dict[str, Any], TrainState], None] | None = None,
) -> Trained:
    """Trains ``epochs`` epochs (stopping at ``setup.total_steps``), evaluating after each.

    Each epoch draws its batches from ``epoch_batches()``. After it, ``evaluate(state, sparsity)`` gives the
    task's fields; the record ``{epoch, step, sparsity, train_loss, **fields, elapsed_s}`` (``elapsed_s``:
    seconds since training started, this evaluation included) is appended to ``log_path`` as one JSON line
    and handed to ``keep(record, state)`` (e.g. for model selection).

    Example::

        trained = train_epochs(setup, 3, lambda: batches(train, 32, buckets, shuffle), evaluate,
                               out / "metrics.jsonl", "sst2 pst")
        print(trained.records[-1]["train_loss"])
    """
    state, records = setup.state, []
    start = time.perf_counter()
    loop = TrainLoop(
        setup.train_step, setup.frozen, setup.mesh, setup.schedule, setup.lr_at, setup.total_steps, description
    )
    with loop, open(log_path, "w") as log:
        for epoch in range(1, epochs + 1):
            state, losses = loop.epoch(state, epoch_batches())
            step, sparsity = loop.step, loop.sparsity
            evaluation = evaluate(state, sparsity)
            record = {
                "epoch": epoch,
                "step": step,
                "sparsity": sparsity,
                "train_loss": float(np.mean(losses)),
                **evaluation.fields,
                "elapsed_s": round(time.perf_counter() - start, 1),
            }
            log.write(json.dumps(record, allow_nan=False) + "\n")
            log.flush()
            records.append(record)
            loop.write(f"epoch {epoch} step {step} sparsity {sparsity:.3f}: {evaluation.text}")
            if keep is not None:
                keep(record, state)
    wall = time.perf_counter() - start
    return Trained(state, records, round(wall, 1), loop.cost(state, setup.target))
