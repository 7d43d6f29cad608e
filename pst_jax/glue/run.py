"""The GLUE experiment: resolve model and data, fine-tune with a method, select, export, report.

``experiments/glue.py`` parses flags into a :class:`~pst_jax.glue.config.GlueConfig` and calls :func:`run`. The steps:

1. :func:`~pst_jax.glue.config.check_config`: every flag is checked (task, method, sparsity, files, model path)
   before anything is loaded, with one-line errors.
2. :func:`~pst_jax.glue.sources.resolve_sources`: the model and data actually used. Without the model hub, the
   default sst2 run falls back to the embedded pretrained MiniLM and Rotten Tomatoes sentences (and says so);
   an explicit ``--model`` or data option is never replaced.
3. :func:`fit`: the jitted, mesh-sharded train step over all local devices; evaluation after every
   epoch; the paper's model selection (best dev score among evaluations at the target sparsity).
4. Outputs in ``output_dir``: ``config.json``, ``metrics.jsonl``, ``results.json``, ``sparse_model/``.
"""

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pst_jax.core.model import measured_sparsity
from pst_jax.core.rules import Plan, make_plan, rules_for
from pst_jax.data.batching import Encoded, batches, encode, length_buckets, num_batches
from pst_jax.glue.config import GlueConfig, check_config, resolve_recipe
from pst_jax.glue.sources import limit_eval, resolve_sources
from pst_jax.glue.tasks import GlueTask, compute_metrics, get_task, majority_baseline
from pst_jax.methods.base import export_model
from pst_jax.training.errors import Diverged, InputError, one_line
from pst_jax.training.losses import classification_loss
from pst_jax.training.method_config import check_ranks, compute_dtype, parameter_report, run_mesh
from pst_jax.training.phases import Phases
from pst_jax.training.run import Evaluation, RunSetup, Schedule, Selection, setup_run, train_epochs, train_steps
from pst_jax.training.run_folder import RunFolder
from pst_jax.training.sharding import shard_batch, to_host

logger = logging.getLogger("pst_jax")

#: Special tokens of a row with one text and with two: [CLS] a [SEP] (b [SEP]); <s> a </s> (</s> b </s>).
SPECIAL_TOKENS: dict[str, tuple[int, int]] = {"bert": (2, 3), "roberta": (2, 4)}


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
        outputs.append(to_host(aux["logits"])[batch["weights"] > 0])
    return np.concatenate(outputs)


def fit(
    cfg: GlueConfig,
    task: GlueTask,
    model: Any,
    plan: Plan,
    tokenizer: Any,
    data: Any,
    folder: RunFolder,
    phases: Phases,
) -> dict[str, Any]:
    """Trains (or resumes), evaluates after every epoch, keeps the best evaluation at target sparsity, exports it."""
    mesh = run_mesh(cfg)
    buckets = length_buckets(cfg.max_length, smallest=32, halves=True)
    with phases("tokenise"):
        train = encode_split(tokenizer, data["train"], task, cfg.max_length)
        evals = {split: encode_split(tokenizer, data[split], task, cfg.max_length) for split in task.eval_splits}
    steps_per_epoch = num_batches(train, cfg.batch_size)
    total_steps, epochs = train_steps(cfg.epochs, cfg.max_steps, steps_per_epoch)
    with phases("setup"):
        loss_fn = classification_loss(model)
        setup = setup_run(cfg, model.params, plan, loss_fn, mesh, total_steps, learning_rate=cfg.learning_rate)
    split, metric = task.eval_splits[0], task.selection_metric
    selected = Selection(lambda record: record[split][metric])
    trained = train_epochs(
        setup,
        Schedule(
            epochs,
            lambda shuffle: batches(train, cfg.batch_size, buckets, shuffle, group_by_length=True),
            cfg.seed,
            cfg.checkpoint_every_steps,
        ),
        lambda state, sparsity: evaluate(setup, task, evals, state.trainable, cfg.eval_batch_size, buckets, sparsity),
        folder,
        f"{task.name} {cfg.method}",
        selected,
        phases,
    )
    best, best_trainable, selection = selected.result(trained)
    with phases("export"):
        params = export_model(best_trainable, to_host(setup.frozen), best["sparsity"], setup.method)
        folder.export(lambda path: (model.save_pretrained(path, params=params), tokenizer.save_pretrained(path)))
    return {
        "steps": trained.records[-1]["step"],
        "epochs": epochs,
        "wall_time_s": trained.wall_time_s,
        "devices": f"{mesh.devices.size} x {jax.devices()[0].device_kind}",
        "mesh": dict(mesh.shape),
        "selection": selection,
        "best": best,
        "final": trained.records[-1],
        "target_sparsity": setup.target,
        "measured_sparsity": measured_sparsity(params, plan),
        "parameters": parameter_report(cfg, model.params, plan, trained.state.opt_state),
        "checkpoint_bytes": trained.checkpoint_bytes,
        "cost": trained.cost,
    }


def evaluate(
    setup: RunSetup,
    task: GlueTask,
    evals: dict[str, Encoded],
    trainable: Any,
    batch_size: int,
    buckets: tuple[int, ...],
    sparsity: float,
) -> Evaluation:
    """The task's metrics on every evaluation split, and whether ``sparsity`` is the target."""
    fields: dict[str, Any] = {}
    for split, encoded in evals.items():
        logits = predict(setup.eval_step, trainable, setup.frozen, encoded, batch_size, buckets, setup.mesh, sparsity)
        fields[split] = compute_metrics(task, logits, encoded.labels)
    fields["at_target_sparsity"] = bool(np.isclose(sparsity, setup.target))
    return Evaluation(fields, ", ".join(f"{split} {fields[split]}" for split in task.eval_splits))


def fit_length_to_model(cfg: GlueConfig, sources: Any, explicit: bool) -> GlueConfig:
    """Checks the model's type and fits ``--max_length`` to its positions, reading its config, not its weights.

    A recipe's length above the positions is lowered to all of them, with a note; an explicit one is an
    :class:`InputError` (past the last position, BERT's embeddings give NaN logits silently). A length that
    leaves no room for one token of each text besides the special tokens is an :class:`InputError`.
    """
    from transformers import AutoConfig

    try:
        model_config = AutoConfig.from_pretrained(sources.model)
    except (OSError, ValueError) as error:
        raise InputError(f"the config of model {sources.model_name} does not load: {one_line(error)}") from None
    if model_config.model_type not in SPECIAL_TOKENS:
        raise InputError(
            f"model {sources.model_name} is a {model_config.model_type!r} model; GLUE here takes BERT or RoBERTa"
        )
    texts = len(get_task(cfg.task).text_keys)
    special = SPECIAL_TOKENS[model_config.model_type][texts - 1]
    if cfg.max_length < special + texts:
        raise InputError(
            f"--max_length {cfg.max_length} leaves no room for text: a {cfg.task} row of a {model_config.model_type} "
            f"model takes {special} special tokens; give at least {special + texts} (one token of each text)"
        )
    offset = model_config.pad_token_id + 1 if model_config.model_type == "roberta" else 0  # RoBERTa skips these
    positions = model_config.max_position_embeddings - offset
    if cfg.max_length <= positions:
        return cfg
    if explicit:
        raise InputError(f"--max_length {cfg.max_length} exceeds the model's {positions} positions; lower it")
    logger.warning(
        "note: --max_length: the default %d exceeds the model's %d positions; using %d",
        cfg.max_length,
        positions,
        positions,
    )
    return dataclasses.replace(cfg, max_length=positions)


def load_tokenizer(sources: Any) -> Any:
    """The model's tokenizer (cheap: loaded before the weights); a one-line :class:`InputError` if it fails."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(sources.model)
    except (OSError, ValueError) as error:
        raise InputError(f"the tokenizer of model {sources.model_name} does not load: {one_line(error)}") from None


def load_model(cfg: GlueConfig, task: GlueTask, sources: Any) -> tuple[Any, Plan]:
    """The model with a fresh head for ``task``, and its plan, checked against the method's ranks."""
    from transformers import AutoConfig, FlaxAutoModelForSequenceClassification

    try:
        # The config first: without one, the Auto class hands `dtype` to the config, not to the model (4.57).
        config = AutoConfig.from_pretrained(sources.model, num_labels=task.num_labels)
        model = FlaxAutoModelForSequenceClassification.from_pretrained(
            sources.model, config=config, seed=cfg.seed, dtype=compute_dtype(cfg)
        )
    except (OSError, ValueError) as error:  # a missing, truncated or corrupt weights file
        raise InputError(f"the weights of model {sources.model_name} do not load: {one_line(error)}") from None
    try:
        plan = make_plan(model.params, rules_for(model.config.model_type))
    except ValueError as error:
        raise InputError(f"model {sources.model_name} is not supported: {error}") from None
    check_ranks(cfg, plan)
    return model, plan


def run(cfg: GlueConfig, hub_ok: Callable[[], bool] | None = None) -> dict[str, Any]:
    """The whole experiment; returns what it writes to ``results.json``."""
    phases = Phases()
    task = check_config(cfg, cfg.num_devices or jax.device_count())
    with phases("load"):
        sources = resolve_sources(cfg, task, hub_ok)
    sources.data = limit_eval(sources.data, task, cfg.max_eval_samples)
    explicit_length = cfg.max_length is not None
    cfg = fit_length_to_model(resolve_recipe(cfg, task, sources.embedded), sources, explicit_length)
    with phases("load"):
        tokenizer = load_tokenizer(sources)
    resolved = {**dataclasses.asdict(cfg), "model_used": sources.model_name, "data_used": sources.data_name}
    with RunFolder.open(Path(cfg.output_dir), resolved, cfg.overwrite) as folder:
        if folder.results is not None:  # finished earlier: nothing to redo
            return folder.results
        return _train_and_report(cfg, task, sources, tokenizer, folder, phases)


def _train_and_report(
    cfg: GlueConfig, task: GlueTask, sources: Any, tokenizer: Any, folder: RunFolder, phases: Phases
) -> dict[str, Any]:
    """Loads the model, trains, exports, and writes ``results.json`` (last) into ``folder``."""
    with phases("load"):
        model, plan = load_model(cfg, task, sources)
    header = {"task": task.name, "model": sources.model_name, "data": sources.data_name, "method": cfg.method}
    try:
        summary = fit(cfg, task, model, plan, tokenizer, sources.data, folder, phases)
    except Diverged as error:
        folder.write_json("results.json", {**header, "status": "diverged", "diverged": error.record})
        raise
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
        "dtype": cfg.dtype,
        "frozen_dtype": cfg.frozen_dtype,
        "majority_baseline": majority_baseline(task, train_labels, eval_labels),
        **summary,
    }
    results["status"] = "finished"
    results["phases_s"] = phases.report()
    if folder.writer:
        logger.warning("%s", phases.line())
    folder.write_json("results.json", results)
    return results
