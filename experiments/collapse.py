"""Does an exported classifier still depend on its input? ``python -m experiments.collapse RUN_DIR [...]``.

For each run folder (an ``experiments.glue`` output), reloads ``sparse_model/`` with plain transformers,
runs the first ``--rows`` rows of the run's first evaluation split through it, and reports, for the
first token's state (``[CLS]`` / ``<s>``, what BERT's and RoBERTa's heads read) after the embeddings and
after each layer:

* ``spread``: how much the state varies across inputs, ``mean_d std_n h[n, d] / mean_{n,d} |h[n, d]|``;
  0 means every input gives the same state, so everything above it (pooler, classifier) answers the same
  for every input;
* ``max_abs``: the largest ``|h[n, d]|``, which shows whether the pretrained model's few very large
  ("outlier") dimensions survive pruning;

and the standard deviation of each logit across inputs. A model that collapsed to a constant predicts
the class prior and its loss gives the layers below nothing to learn from. Writes ``collapse.json`` into
each run folder and prints a table.
"""

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pst_jax.data.batching import batches, length_buckets
from pst_jax.glue.config import GlueConfig, saved_config
from pst_jax.glue.run import encode_split
from pst_jax.glue.sources import limit_eval, resolve_sources
from pst_jax.glue.tasks import get_task
from pst_jax.training.errors import InputError


def spread_statistics(states: np.ndarray) -> dict[str, float]:
    """``{"spread", "max_abs"}`` of ``(inputs, hidden)`` first-token states (see the module docstring)."""
    states = np.asarray(states, np.float64)
    mean_abs = float(np.mean(np.abs(states)))
    spread = float(np.mean(np.std(states, axis=0)) / mean_abs) if mean_abs > 0 else 0.0
    return {"spread": spread, "max_abs": float(np.max(np.abs(states)))}


def probe(run_dir: Path, cfg: GlueConfig, rows: int, hub_ok: Callable[[], bool] | None = None) -> dict:
    """First-token statistics of every layer and the logits' spread for ``run_dir/sparse_model``.

    ``cfg`` is the run's :func:`~pst_jax.glue.config.saved_config`; ``hub_ok`` decides whether the model hub
    may be asked for the run's data (as in :func:`~pst_jax.glue.sources.resolve_sources`).
    """
    from transformers import AutoTokenizer, FlaxAutoModelForSequenceClassification

    task = get_task(cfg.task)
    split = task.eval_splits[0]
    data = limit_eval(resolve_sources(cfg, task, hub_ok).data, task, rows)[split]
    model = FlaxAutoModelForSequenceClassification.from_pretrained(run_dir / "sparse_model")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "sparse_model")
    encoded = encode_split(tokenizer, data, task, cfg.max_length)
    firsts, logits = [], []
    for batch in batches(encoded, cfg.eval_batch_size, length_buckets(cfg.max_length, smallest=32)):
        keep = batch["weights"] > 0
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        out = model(**inputs, output_hidden_states=True)
        firsts.append(np.stack([np.asarray(h[:, 0])[keep] for h in out.hidden_states]))
        logits.append(np.asarray(out.logits)[keep])
    states = np.concatenate(firsts, axis=1)  # (layers + 1, inputs, hidden)
    all_logits = np.concatenate(logits)
    return {
        "run": str(run_dir),
        "split": split,
        "rows": int(all_logits.shape[0]),
        "layers": [spread_statistics(s) for s in states],
        "logits_std": [float(x) for x in np.std(all_logits.astype(np.float64), axis=0)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", nargs="+", help="experiments.glue output folders (with sparse_model/)")
    parser.add_argument("--rows", type=int, default=256, help="evaluation rows to run through each model")
    args = parser.parse_args(argv)
    if args.rows < 2:
        print(f"error: --rows must be at least 2 (a spread needs two inputs), got {args.rows}", file=sys.stderr)
        return 2
    configs = {}
    for run_dir in map(Path, args.run_dirs):
        for need in ("config.json", "sparse_model/config.json"):
            if not (run_dir / need).is_file():
                print(f"error: {run_dir / need} not found: pass an experiments.glue --output_dir", file=sys.stderr)
                return 2
        configs[run_dir] = saved_config(run_dir)
        try:
            get_task(configs[run_dir].task)
        except ValueError as error:
            print(f"error: {run_dir} is not an experiments.glue run ({error})", file=sys.stderr)
            return 2
    reports = []
    for run_dir, cfg in configs.items():
        try:
            report = probe(run_dir, cfg, args.rows)
        except InputError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        (run_dir / "collapse.json").write_text(json.dumps(report, indent=2) + "\n")
        reports.append(report)
    layers = max(len(r["layers"]) for r in reports)
    header = ["run", *(f"layer {i} spread / max" for i in range(layers)), "logits std"]
    print("| " + " | ".join(header) + " |\n| --- |" + " ---: |" * (len(header) - 1))
    for r in reports:
        cells = [f"{s['spread']:.3f} / {s['max_abs']:.1f}" for s in r["layers"]]
        cells += [""] * (layers - len(cells))
        print(f"| {r['run']} | " + " | ".join(cells) + f" | {max(r['logits_std']):.2g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
