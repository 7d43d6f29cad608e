"""The data-to-text experiment (E2E, DART, WebNLG): fine-tune GPT-2 or a Llama-family decoder, generate, score.

``experiments/nlg.py`` parses flags into an :class:`~pst_jax.nlg.config.NLGConfig` and calls :func:`run`. The steps:

1. :func:`~pst_jax.nlg.config.check_config`: every flag is checked before anything is loaded, with one-line errors.
2. :func:`load_data`: the splits from ``--data_dir`` (each dataset's original layout), from
   ``--train_file``/``--validation_file``/``--test_file``, or from the hub when it is reachable.
3. :func:`encode_rows`: the token rows, with the tokenizer only; a row whose target is cut off is an error
   before the weights load.
4. :func:`fit`: the jitted, mesh-sharded train step (loss on the target text only, label smoothing),
   the validation loss after every epoch, then the export of the final model at the target sparsity.
5. :func:`~pst_jax.nlg.generation.generate`: beam search (:mod:`pst_jax.nlg.beam_search`) on the exported
   sparse model, then the task's metrics (:mod:`pst_jax.nlg.metrics`).
6. Outputs in ``output_dir``: ``config.json``, ``metrics.jsonl``, ``results.json``, ``predictions.jsonl``
   (source, generated text, references), ``predictions.txt`` (one generated text a line) and
   ``sparse_model/``, which ``FlaxGPT2LMHeadModel.from_pretrained`` loads (a decoder: the family's Flax class,
   ``FlaxLlamaForCausalLM`` ..., or :func:`pst_jax.models.load_decoder`).

``--model`` is GPT-2 or a Llama, Mistral or Gemma decoder (:mod:`pst_jax.nlg.model`), with its own tokenizer.

The defaults are the paper's recipe (the LoRA NLG setup, ``PST_METHOD.md``): GPT-2 Medium, sequences of
512 tokens, AdamW with learning rate 1e-4 and weight decay 0, 500 warm-up steps then linear decay,
5 epochs, batch 8, label smoothing 0.1; beam 10, length penalty 0.8, no repeated 4-gram.
"""

import dataclasses
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from pst_jax.core.model import measured_sparsity
from pst_jax.core.rules import Plan
from pst_jax.data.batching import length_buckets
from pst_jax.data.hub import hub_model_cached, hub_reachable
from pst_jax.methods.base import export_model
from pst_jax.nlg.config import TASK_METRICS, NLGConfig, check_config, resolve_defaults
from pst_jax.nlg.data import SPLIT_FILES, NLGExample, load_nlg_dir, load_nlg_files, load_nlg_hub
from pst_jax.nlg.generation import generate, generation_inputs, write_predictions
from pst_jax.nlg.metrics import score
from pst_jax.nlg.model import load_model, load_tokenizer, positions, read_model_config
from pst_jax.nlg.rows import encode_for_lm, lm_batches, rows_without_target
from pst_jax.training.errors import Diverged, InputError
from pst_jax.training.losses import causal_lm_loss
from pst_jax.training.method_config import parameter_report, run_mesh
from pst_jax.training.phases import Phases
from pst_jax.training.processes import is_writer
from pst_jax.training.run import Evaluation, RunSetup, Schedule, setup_run, train_epochs, train_steps
from pst_jax.training.run_folder import RunFolder
from pst_jax.training.sharding import shard_batch, to_host

logger = logging.getLogger("pst_jax")


def load_data(cfg: NLGConfig, hub_ok: Callable[[], bool] | None = None) -> tuple[dict[str, list[NLGExample]], str]:
    """``({split: examples}, description)`` from the local files, or from the hub when it is reachable."""
    try:
        if cfg.data_dir is not None:
            return load_nlg_dir(cfg.task, cfg.data_dir), f"{cfg.task} from {cfg.data_dir}"
        if cfg.train_file:
            files = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
            named = ", ".join(f"{split} {path}" for split, path in files.items() if path)
            return load_nlg_files(cfg.task, files), f"{cfg.task} from {named}"
    except ValueError as error:  # the loaders' one-line errors: missing file, malformed row
        raise InputError(str(error)) from None
    if not (hub_ok or hub_reachable)():
        raise InputError(
            f"the hub is unreachable, so {cfg.task} cannot be downloaded; pass --data_dir (the dataset's original "
            "files) or --train_file/--validation_file"
        )
    return load_nlg_hub(cfg.task), f"{cfg.task} from the Hugging Face hub"


def _check_model(cfg: NLGConfig, hub_ok: Callable[[], bool] | None) -> None:
    if Path(cfg.model).expanduser().exists():
        return
    if not (hub_model_cached(cfg.model) or (hub_ok or hub_reachable)()):
        raise InputError(
            f"--model {cfg.model} is not a local folder, not cached, and the hub is unreachable; "
            "pass --model FOLDER (a Flax-loadable GPT-2, Llama, Mistral or Gemma with its tokenizer)"
        )


def _fit_to_run_and_model(cfg: NLGConfig, total_steps: int, model_config: Any) -> NLGConfig:
    """``cfg`` with its unset defaults fitted to the run and the model (notes logged); loads no weights."""
    cfg, notes = resolve_defaults(cfg, total_steps, positions(model_config))
    for note in notes:
        logger.warning("note: %s", note)
    return cfg


def _steps(cfg: NLGConfig, train_rows: int) -> tuple[int, int]:
    return train_steps(cfg.epochs, cfg.max_steps, math.ceil(train_rows / cfg.batch_size))


def validation_loss(setup: RunSetup, trainable: Any, batches: list, sparsity: float) -> float:
    """Mean cross-entropy per target token (no label smoothing) over the validation batches."""
    sums = []  # device scalars: read once at the end, so batches are dispatched without waiting
    for batch in tqdm(
        batches, desc="validation loss", unit="batch", leave=False, dynamic_ncols=True, disable=not is_writer()
    ):
        loss, aux = setup.eval_step(trainable, setup.frozen, shard_batch(batch, setup.mesh), sparsity)
        sums.append((loss * aux["tokens"], aux["tokens"]))
    total, tokens = np.asarray(to_host(sums), np.float64).sum(axis=0)
    return float(total / max(tokens, 1.0))


def _split_file(cfg: NLGConfig, split: str) -> str:
    if cfg.data_dir is not None:
        return str(Path(cfg.data_dir) / SPLIT_FILES[cfg.task][split])
    return getattr(cfg, f"{split}_file") or f"the hub's {split} split"


def encode_rows(cfg: NLGConfig, tokenizer: Any, data: dict[str, list[NLGExample]]) -> dict[str, dict[str, Any]]:
    """The training and validation rows (:func:`~pst_jax.nlg.rows.encode_for_lm`; validation cut to
    ``--max_eval_samples``), each keeping a target token: a row whose source fills ``--max_length`` would carry
    no loss (a validation loss of 0, perplexity 1), so it is an :class:`InputError`. Needs the tokenizer only."""
    rows = {}
    for split, examples in (("train", data["train"]), ("validation", data["validation"][: cfg.max_eval_samples])):
        rows[split] = encode_for_lm(tokenizer, examples, cfg.max_length)
        empty = rows_without_target(rows[split])
        if empty.size:
            first = int(np.searchsorted(np.cumsum([len(e.references) for e in examples]), empty[0], side="right"))
            raise InputError(
                f"{empty.size} of {len(rows[split]['input_ids'])} {split} rows keep no target token within "
                f"--max_length {cfg.max_length}, their source fills it (the first in {_split_file(cfg, split)}: "
                f"{examples[first].source[:60]!r}); raise --max_length or shorten the sources"
            )
    return rows


def fit(
    cfg: NLGConfig,
    model: Any,
    plan: Plan,
    tokenizer: Any,
    rows: dict[str, dict[str, Any]],
    mesh: Mesh,
    folder: RunFolder,
    phases: Phases,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Trains (or resumes) on :func:`encode_rows`' rows, logs the validation loss after every epoch, exports the
    final model.

    Returns:
      ``(summary, params)``: what ``results.json`` reports of the training, and the exported sparse params.
    """
    buckets = length_buckets(cfg.max_length, smallest=32)
    train, validation = rows["train"], rows["validation"]
    val_batches = list(lm_batches(validation, cfg.eval_batch_size, buckets))
    total_steps, epochs = _steps(cfg, len(train["input_ids"]))
    with phases("setup"):
        setup = setup_run(
            cfg,
            model.params,
            plan,
            causal_lm_loss(model, cfg.label_smoothing),
            mesh,
            total_steps,
            learning_rate=cfg.learning_rate,
            eval_loss_fn=causal_lm_loss(model),
            warmup_steps=cfg.warmup_steps,
            weight_decay=cfg.weight_decay,
        )
    with phases("evaluation"):
        initial_loss = validation_loss(setup, setup.state.trainable, val_batches, setup.schedule(0))
    logger.info("validation loss before training: %.4f", initial_loss)
    trained = train_epochs(
        setup,
        Schedule(
            epochs,
            lambda shuffle: lm_batches(train, cfg.batch_size, buckets, shuffle, group_by_length=True),
            cfg.seed,
            cfg.checkpoint_every_steps,
        ),
        lambda state, sparsity: evaluate(setup, state.trainable, val_batches, sparsity),
        folder,
        f"{cfg.task} {cfg.method}",
        phases=phases,
    )
    step = trained.records[-1]["step"]
    with phases("export"):
        trainable, frozen = to_host(trained.state.trainable), to_host(setup.frozen)
        params = export_model(trainable, frozen, setup.schedule(step), setup.method)
        folder.export(lambda path: (model.save_pretrained(path, params=params), tokenizer.save_pretrained(path)))
    summary = {
        "steps": step,
        "epochs": epochs,
        "wall_time_s": trained.wall_time_s,
        "devices": f"{mesh.devices.size} x {jax.devices()[0].device_kind}",
        "mesh": dict(mesh.shape),
        "initial_validation_loss": initial_loss,
        "final": trained.records[-1],
        "target_sparsity": setup.target,
        "measured_sparsity": measured_sparsity(params, plan),
        "parameters": parameter_report(cfg, model.params, plan, trained.state.opt_state),
        "checkpoint_bytes": trained.checkpoint_bytes,
        "cost": trained.cost,
    }
    return summary, params


def evaluate(setup: RunSetup, trainable: Any, batches: list, sparsity: float) -> Evaluation:
    """The validation loss and perplexity after an epoch."""
    loss = validation_loss(setup, trainable, batches, sparsity)
    fields = {"validation_loss": loss, "validation_perplexity": math.exp(min(loss, 700.0))}
    return Evaluation(fields, f"validation loss {loss:.4f}")


def _load_model(cfg: NLGConfig) -> tuple[Any, Plan]:
    """The model and its plan, checked against the method's ranks (:func:`~pst_jax.nlg.model.load_model`)."""
    return load_model(cfg, read_model_config(cfg.model).model_type)


def run(cfg: NLGConfig, hub_ok: Callable[[], bool] | None = None) -> dict[str, Any]:
    """The whole experiment; returns what it writes to ``results.json``."""
    phases = Phases()
    check_config(cfg, cfg.num_devices or jax.device_count())
    with phases("load"):
        data, data_name = load_data(cfg, hub_ok)
    split, examples = generation_inputs(cfg, data)
    _check_model(cfg, hub_ok)
    model_config = read_model_config(cfg.model, cfg.remat)  # a model type or config it cannot take stops here
    cfg = _fit_to_run_and_model(cfg, _steps(cfg, sum(len(e.references) for e in data["train"]))[0], model_config)
    with phases("load"):
        tokenizer = load_tokenizer(cfg.model, model_config)
    with phases("tokenise"):
        rows = encode_rows(cfg, tokenizer, data)  # before the weights: rows without a target are an error
    resolved = {**dataclasses.asdict(cfg), "data_used": data_name, "generate_split_used": split}
    with RunFolder.open(Path(cfg.output_dir), resolved, cfg.overwrite) as folder:
        if folder.results is not None:  # finished earlier: nothing to redo
            return folder.results
        return _train_and_report(cfg, tokenizer, rows, (data_name, split, examples), folder, phases)


def _train_and_report(
    cfg: NLGConfig,
    tokenizer: Any,
    rows: dict[str, dict[str, Any]],
    generation: tuple[str, str, list[NLGExample]],
    folder: RunFolder,
    phases: Phases,
) -> dict[str, Any]:
    """Loads the model, trains, exports, generates for ``generation`` (data name, split, examples), scores,
    and writes ``results.json`` (last) into ``folder``."""
    data_name, split, examples = generation
    with phases("load"):
        model, plan = _load_model(cfg)
    mesh = run_mesh(cfg)
    try:
        summary, params = fit(cfg, model, plan, tokenizer, rows, mesh, folder, phases)
    except Diverged as error:
        header = {"task": cfg.task, "model": cfg.model, "data": data_name, "method": cfg.method}
        folder.write_json("results.json", {**header, "status": "diverged", "diverged": error.record})
        raise

    with phases("generation"):
        texts = generate(cfg, model, params, tokenizer, examples, mesh)
    if folder.writer:
        write_predictions(folder.path, examples, texts)
    with phases("metrics"):
        metrics = cfg.metrics or TASK_METRICS[cfg.task]
        scores = score(texts, [e.references for e in examples], metrics, lowercase=cfg.task == "e2e")

    results = {
        "task": cfg.task,
        "model": cfg.model,
        "data": data_name,
        "method": cfg.method,
        "learning_rate": cfg.learning_rate,
        "dtype": cfg.dtype,
        "frozen_dtype": cfg.frozen_dtype,
        **summary,
        "generation": {
            "split": split,
            "inputs": len(examples),
            "num_beams": cfg.num_beams,
            "length_penalty": cfg.length_penalty,
            "no_repeat_ngram_size": cfg.no_repeat_ngram_size,
            "max_new_tokens": cfg.max_new_tokens,
            "empty_outputs": sum(not text for text in texts),
            "wall_time_s": phases.report()["generation"],
        },
        "metrics": scores,
    }
    results["status"] = "finished"
    results["phases_s"] = phases.report()
    if folder.writer:
        logger.warning("%s", phases.line())
    folder.write_json("results.json", results)
    return results
