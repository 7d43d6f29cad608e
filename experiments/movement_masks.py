"""How good is movement pruning's mask when pruning begins? ``python -m experiments.movement_masks``.

Trains movement pruning dense (sparsity 0, as in the schedule's warm-up) on the embedded default
(MiniLM-L6, Rotten Tomatoes, the sweep's settings: lr 3e-5, scores lr 1e-2, batch 32, one epoch's
learning-rate decay), and after each of ``--steps`` measures dev accuracy when each planned matrix is
pruned at each of ``--sparsities`` by three rankings of its weights:

* ``movement``: the learned scores (what the method would prune);
* ``magnitude``: ``|W|`` of the same weights;
* ``random``: a fixed random ranking.

Nothing is retrained after pruning: this measures the mask alone. It also reports what the scores rank
by: the median over matrices of their Spearman correlation with each weight's growth in magnitude since
the start, ``|W_t| - |W_0|``, and with ``|W_t|``. Writes ``movement_masks.json`` to ``--output_dir`` and
prints a table.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats
from tqdm.auto import tqdm

from pst_jax.core.rules import make_plan, read_matrix, rules_for
from pst_jax.data.batching import batches, encode, length_buckets, num_batches
from pst_jax.glue.config import GlueConfig, check_config, resolve_recipe
from pst_jax.glue.run import predict
from pst_jax.glue.sources import resolve_sources
from pst_jax.glue.tasks import compute_metrics
from pst_jax.training.losses import classification_loss
from pst_jax.training.run import setup_run, train_steps
from pst_jax.training.sharding import make_mesh, shard_batch

RANKINGS = ("movement", "magnitude", "random")


def _numbers(kind: type, text: str) -> list:
    try:
        return sorted(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps", type=lambda t: _numbers(int, t), default=[37, 110], help="dense steps after which to measure"
    )
    parser.add_argument(
        "--sparsities",
        type=lambda t: _numbers(float, t),
        default=[0.1, 0.2, 0.5],
        help="comma-separated sparsities each ranking is scored at",
    )
    parser.add_argument("--learning_rate", type=float, default=3e-5, help="peak learning rate of the weights")
    parser.add_argument("--scores_learning_rate", type=float, default=1e-2, help="peak learning rate of the scores")
    parser.add_argument("--seed", type=int, default=43, help="seed of the head, the scores and the shuffle")
    parser.add_argument("--output_dir", default="runs/movement-masks", help="where movement_masks.json goes")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> str | None:
    """The first problem with the flags, as a one-line message, or None."""
    if not args.steps or args.steps[0] < 1:
        return f"--steps must be positive integers, got {args.steps}"
    if not args.sparsities or not all(0 < s < 1 for s in args.sparsities):
        return f"--sparsities must each be in (0, 1), got {args.sparsities}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if problem := check_args(args):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = GlueConfig(
        task="sst2",
        method="movement",
        learning_rate=args.learning_rate,
        scores_learning_rate=args.scores_learning_rate,
        seed=args.seed,
        output_dir=args.output_dir,
        epochs=1,  # the sweep's settings of the README's figures, not today's embedded recipe
        max_length=64,
        dtype="float32",
        frozen_dtype="float32",  # setup_run stores the frozen weights in it; the recipe's is now bfloat16
    )
    task = check_config(cfg, 1)
    sources = resolve_sources(cfg, task, hub_ok=lambda: False)  # always the embedded default
    cfg = resolve_recipe(cfg, task, sources.embedded)

    from transformers import AutoTokenizer, FlaxAutoModelForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(sources.model)
    model = FlaxAutoModelForSequenceClassification.from_pretrained(sources.model, num_labels=2, seed=cfg.seed)
    plan = make_plan(model.params, rules_for(model.config.model_type))
    mesh = make_mesh(jax.local_devices()[:1])
    buckets = length_buckets(cfg.max_length, smallest=32)
    train, dev = (
        encode(tokenizer, [split[k] for k in task.text_keys], split["label"], cfg.max_length)
        for split in (sources.data["train"], sources.data["validation"])
    )
    total_steps, _ = train_steps(cfg.epochs, None, num_batches(train, cfg.batch_size))
    if args.steps[-1] > total_steps:
        print(f"error: --steps {args.steps[-1]} is past the run's {total_steps} steps (one epoch)", file=sys.stderr)
        return 2

    setup = setup_run(
        cfg, model.params, plan, classification_loss(model), mesh, total_steps, learning_rate=cfg.learning_rate
    )
    state, frozen, train_step, eval_step = setup.state, setup.frozen, setup.train_step, setup.eval_step
    rng = np.random.default_rng(0)
    random_scores = {m.name: jnp.asarray(rng.standard_normal((m.d_in, m.d_out)), jnp.float32) for m in plan.matrices}

    def accuracy(trainable, scores, sparsity):
        logits = predict(eval_step, {**trainable, "scores": scores}, frozen, dev, 64, buckets, mesh, sparsity)
        return compute_metrics(task, logits, dev.labels)["accuracy"]

    def magnitudes(trainable):
        weights = {**frozen, **trainable["weights"]}
        return {m.name: np.abs(np.asarray(read_matrix(weights[m.path], m))) for m in plan.matrices}

    def median_spearman(scores, targets):
        return float(np.median([stats.spearmanr(np.ravel(scores[n]), np.ravel(targets[n]))[0] for n in targets]))

    start = magnitudes(state.trainable)
    results = []
    data = batches(train, cfg.batch_size, buckets, np.random.default_rng(cfg.seed), group_by_length=True)
    for step in tqdm(range(1, args.steps[-1] + 1), desc="movement, dense steps", unit="step"):
        state, _ = train_step(state, frozen, shard_batch(next(data), mesh), 0.0)
        if step not in args.steps:
            continue
        trainable = state.trainable
        now = magnitudes(trainable)
        on_device = {n: jnp.asarray(v) for n, v in now.items()}  # once, not at every evaluation batch
        rankings = {"movement": trainable["scores"], "magnitude": on_device, "random": random_scores}
        row = {
            "step": step,
            "scores_vs_growth": median_spearman(trainable["scores"], {n: now[n] - start[n] for n in now}),
            "scores_vs_magnitude": median_spearman(trainable["scores"], now),
            "dense": accuracy(trainable, trainable["scores"], 0.0),
        }
        row.update({f"{r}@{s:g}": accuracy(trainable, rankings[r], s) for s in args.sparsities for r in RANKINGS})
        results.append(row)
        tqdm.write(json.dumps(row))

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"model": sources.model_name, "data": sources.data_name, "args": vars(args), "total_steps": total_steps}
    (out / "movement_masks.json").write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")
    header = ["step", "spearman(scores, growth)", "spearman(scores, |W|)", "dense"] + [
        f"{r} {100 * s:g}%" for s in args.sparsities for r in RANKINGS
    ]
    print("| " + " | ".join(header) + " |\n|" + " ---: |" * len(header))
    for row in results:
        print(
            "| "
            + " | ".join(
                f"{v:.3f}" if k.startswith("scores_") else f"{v:.1f}" if isinstance(v, float) else str(v)
                for k, v in row.items()
            )
            + " |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
