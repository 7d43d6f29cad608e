"""Checks a GLUE run's export: reload ``sparse_model/`` with plain transformers, re-evaluate, measure its zeros."""

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pst_jax.core.model import kernel_sparsity
from pst_jax.core.rules import flatten, make_plan, read_matrix, rules_for
from pst_jax.data.batching import batches, length_buckets
from pst_jax.data.hub import check_model_folder
from pst_jax.glue.config import GlueConfig, saved_config
from pst_jax.glue.run import encode_split
from pst_jax.glue.sources import limit_eval, resolve_sources
from pst_jax.glue.tasks import TASKS, compute_metrics, get_task
from pst_jax.training.errors import InputError, one_line
from pst_jax.training.losses import classification_loss
from pst_jax.training.method_config import compute_dtype
from pst_jax.training.sharding import make_mesh, shard_batch


def finished_results(out: Path) -> dict[str, Any]:
    """The ``results.json`` of a finished GLUE run in ``out``; an :class:`InputError` for anything else."""
    path = out / "results.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"{out} holds no finished GLUE run (no readable results.json); run experiments.glue") from None
    if not isinstance(results, dict):
        raise InputError(f"{path} is not a GLUE run's results (a JSON {type(results).__name__}); run experiments.glue")
    if results.get("task") not in TASKS:
        raise InputError(
            f"{out} holds a run of task {results.get('task')!r}, not a GLUE one ({', '.join(TASKS)}); "
            "pass the output folder of experiments.glue"
        )
    if results.get("status") != "finished" or "best" not in results:
        status = results.get("status", "unknown")
        raise InputError(f"{out} holds no finished GLUE run (status: {status}); rerun experiments.glue into it")
    return results


def _finished_run(out: Path) -> tuple[dict[str, Any], GlueConfig]:
    """The results and config of the finished GLUE run in ``out``, its ``sparse_model/`` checked to be loadable."""
    results = finished_results(out)
    try:
        cfg = saved_config(out)
        if not (out / "sparse_model").is_dir():
            raise FileNotFoundError(f"no folder {out / 'sparse_model'}")
        check_model_folder(out / "sparse_model", label=str(out / "sparse_model"))
    except (OSError, TypeError, ValueError) as error:  # deleted or edited since the run
        raise InputError(
            f"{out} is not a complete GLUE run ({one_line(error)}); rerun experiments.glue into it"
        ) from None
    return results, cfg


def check_export(output_dir: str | Path, hub_ok: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Reloads ``output_dir/sparse_model`` with plain transformers (computing in the run's ``--dtype``) and
    re-evaluates it on the run's dev data.

    Returns the re-computed metrics next to the ones ``results.json`` reports, and the measured
    sparsity of every sparsified kernel and of the parameters that must stay dense.
    """
    from transformers import AutoConfig, AutoTokenizer, FlaxAutoModelForSequenceClassification

    out = Path(output_dir)
    results, cfg = _finished_run(out)
    task = get_task(cfg.task)
    sources = resolve_sources(cfg, task, hub_ok)
    sources.data = limit_eval(sources.data, task, cfg.max_eval_samples)
    # In the run's compute dtype (--dtype), as it evaluated; given the config, the Auto class passes `dtype` on.
    model = FlaxAutoModelForSequenceClassification.from_pretrained(
        out / "sparse_model", config=AutoConfig.from_pretrained(out / "sparse_model"), dtype=compute_dtype(cfg)
    )
    tokenizer = AutoTokenizer.from_pretrained(out / "sparse_model")
    plan = make_plan(model.params, rules_for(model.config.model_type))
    nonfinite = {p: int(np.sum(~np.isfinite(np.asarray(v)))) for p, v in flatten(model.params).items()}
    if any(nonfinite.values()):
        worst = max(nonfinite, key=nonfinite.get)
        raise InputError(
            f"{out / 'sparse_model'} has {sum(nonfinite.values())} non-finite weights (most in {worst}); "
            "the run diverged: rerun it with a lower --learning_rate"
        )
    mesh = make_mesh(jax.local_devices()[:1])
    forward = jax.jit(lambda params, batch: classification_loss(model)(params, batch, None)[1])
    buckets = length_buckets(cfg.max_length, smallest=32, halves=True)
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
