"""Why a PST run collapses: the weight update's size against the pretrained weights, step by step.

Trains PST on the embedded default (pretrained MiniLM, Rotten Tomatoes: the first ``--train_rows`` training rows,
the first ``--eval_rows`` dev rows) as ``experiments.glue`` does (its method, optimizer, schedule, batches and
dropout), for the first ``--steps`` steps of a ``--total_steps`` schedule, so the start of a long run can be looked
at cheaply. Every 5 steps it prints the training loss, the gradient norm of the factors and the median and largest
over the sparsified matrices of ``rms(U @ V) / rms(W0)``; every ``--eval_every`` steps the dev accuracy. JSON lines
go to ``--output``.

The collapse at the top of the paper's learning-rate range with the authors' initialisation, and the default
that avoids it (README, "Learning rate and the weight update's initial scale"), about 4 minutes each::

    python -m experiments.lr_dynamics --learning_rate 5e-4 --weight_init_std 1
    python -m experiments.lr_dynamics --learning_rate 5e-4
"""

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pst_jax.core.rules import make_plan, read_matrix, rules_for
from pst_jax.data.batching import batches, length_buckets
from pst_jax.glue.config import GlueConfig
from pst_jax.glue.loaders import load_rotten_tomatoes
from pst_jax.glue.run import encode_split, predict
from pst_jax.glue.sources import embedded_model_path
from pst_jax.glue.tasks import compute_metrics, get_task
from pst_jax.training.losses import classification_loss
from pst_jax.training.method_config import build_method, sparsity_schedule
from pst_jax.training.optim import make_optimizer
from pst_jax.training.sharding import make_mesh, shard_batch
from pst_jax.training.step import init_train_state, jit_eval_step, jit_train_step, make_eval_step, make_train_step


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--learning_rate", type=float, default=5e-4, help="peak learning rate (linear decay)")
    p.add_argument("--weight_init_std", type=float, help="initial std of V (default 1/sqrt(rank); the authors': 1)")
    p.add_argument("--head_learning_rate", type=float, help="the task head's peak learning rate (default: the same)")
    p.add_argument("--warmup_steps", type=int, default=0, help="linear learning-rate warm-up steps")
    p.add_argument("--freeze_head", action="store_true", help="train only the PST factors")
    p.add_argument("--seed", type=int, default=43, help="seed of the factors, head, dropout and shuffle")
    p.add_argument("--train_rows", type=int, default=8000, help="first N training rows of the embedded data")
    p.add_argument("--eval_rows", type=int, default=500, help="first N dev rows for the accuracy")
    p.add_argument("--steps", type=int, default=150, help="steps to run")
    p.add_argument("--total_steps", type=int, default=750, help="the schedule's length (3 epochs of 8,000 rows)")
    p.add_argument("--eval_every", type=int, default=75, help="dev accuracy every N steps")
    p.add_argument("--output", default="runs/lr-dynamics.jsonl", help="JSON lines, one per step")
    args = p.parse_args(argv)
    if not 0 < args.steps <= args.total_steps or min(args.train_rows, args.eval_rows, args.eval_every) <= 0:
        sys.exit("error: need 0 < --steps <= --total_steps and positive --train_rows, --eval_rows, --eval_every")
    return args


def update_ratios(trainable, frozen, plan) -> jax.Array:
    """``rms(U @ V) / rms(W0)`` of every sparsified matrix."""
    ratios = []
    for m in plan.matrices:
        f, w0 = trainable["pst"][m.name], read_matrix(frozen[m.path], m)
        ratios.append(jnp.sqrt(jnp.mean((f["U"] @ f["V"]) ** 2) / jnp.mean(w0**2)))
    return jnp.stack(ratios)


def main(argv=None) -> None:
    args = parse_args(argv)
    from transformers import AutoTokenizer, FlaxAutoModelForSequenceClassification

    task, data, path = get_task("sst2"), load_rotten_tomatoes(), embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = FlaxAutoModelForSequenceClassification.from_pretrained(path, num_labels=2, seed=args.seed)
    plan = make_plan(model.params, rules_for(model.config.model_type))
    cfg = GlueConfig(
        learning_rate=args.learning_rate,
        seed=args.seed,
        train_head=not args.freeze_head,
        weight_init_std=args.weight_init_std,
    )
    train = encode_split(tokenizer, data["train"].select(range(args.train_rows)), task, 64)
    dev = encode_split(tokenizer, data["validation"].select(range(args.eval_rows)), task, 64)
    mesh, buckets = make_mesh(jax.local_devices()[:1]), length_buckets(64, smallest=32)
    method = build_method(cfg, plan)
    schedule, _ = sparsity_schedule(cfg, method, args.total_steps)
    optimizer = make_optimizer(
        method, args.learning_rate, args.total_steps, args.warmup_steps, head_learning_rate=args.head_learning_rate
    )
    state, frozen = init_train_state(jax.random.key(args.seed), model.params, method, optimizer, mesh)
    loss_fn = classification_loss(model)
    step_fn = jit_train_step(make_train_step(loss_fn, method, optimizer), mesh)
    eval_step = jit_eval_step(make_eval_step(loss_fn, method))
    ratios_fn = jax.jit(lambda trainable, frozen: update_ratios(trainable, frozen, plan))
    shuffle, t = np.random.default_rng(args.seed), 0
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w") as log:
        while t < args.steps:
            for batch in batches(train, 32, buckets, shuffle, group_by_length=True):
                sparsity = schedule(t)
                state, metrics = step_fn(state, frozen, shard_batch(batch, mesh), sparsity)
                t += 1
                record = {"step": t, "sparsity": round(sparsity, 4)}
                if t % 5 == 0 or t == args.steps:
                    ratios = np.asarray(ratios_fn(state.trainable, frozen))
                    record.update(
                        loss=float(metrics["loss"]),
                        grad_norm_pst=float(metrics["grad_norms"]["pst"]),
                        update_ratio_median=float(np.median(ratios)),
                        update_ratio_max=float(ratios.max()),
                    )
                if t % args.eval_every == 0 or t == args.steps:
                    logits = predict(eval_step, state.trainable, frozen, dev, 64, buckets, mesh, schedule(t))
                    record["accuracy"] = compute_metrics(task, logits, dev.labels)["accuracy"]
                if len(record) > 2:
                    print(json.dumps(record), flush=True)
                    log.write(json.dumps(record) + "\n")
                if t >= args.steps:
                    break


if __name__ == "__main__":
    main()
