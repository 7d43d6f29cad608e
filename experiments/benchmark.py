"""What one train step costs per method: ``python -m experiments.benchmark`` (BERT-base shapes, random weights).

For each method (default: dense, pst, movement, magnitude, lora) on a model built from its config
(nothing is downloaded), one batch of random tokens, at ``--sparsity``:

* trainable parameters and optimizer-state bytes (of the state actually built);
* memory of the compiled train step from XLA's memory analysis (arguments + outputs + temporaries
  - donated aliases), the device allocator's peak where the backend reports one (GPU/TPU), and the
  process's peak resident memory;
* compile time, and the median wall time of ``--steps`` steps after ``--warmup`` steps;
* the mask share: median time of the method's masks alone (jitted ``Method.masks``), over its step time;
* with ``--breakdown``, what is live at the peak of the compiled step (model activations, frozen weights,
  what the method computes outside the model, gradients, state), from XLA's liveness dump
  (:mod:`pst_jax.training.peak_memory`).

Each method runs in its own process (``--no_isolate`` to run in this one), so peaks are per method.
Output: a table on stdout, and JSON (``--output``, default ``runs/benchmark-MODEL.json``). Examples:

    python -m experiments.benchmark                                   # BERT-base, batch 32, length 128
    python -m experiments.benchmark --model gpt2-medium --batch_size 8 --seq_len 512
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pst_jax.core.rules import make_plan, rules_for
from pst_jax.methods.registry import METHOD_NAMES, make_method
from pst_jax.training import peak_memory, profiling
from pst_jax.training.losses import causal_lm_loss, classification_loss
from pst_jax.training.optim import make_optimizer
from pst_jax.training.sharding import make_mesh, shard_batch
from pst_jax.training.step import init_train_state, jit_train_step, make_train_step

# name: (family, config overrides); the defaults of BertConfig / GPT2Config are BERT-base / GPT-2 small.
MODELS = {
    "bert-base": ("bert", {}),
    "bert-large": ("bert", {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                            "intermediate_size": 4096}),
    "gpt2": ("gpt2", {}),
    "gpt2-medium": ("gpt2", {"n_embd": 1024, "n_layer": 24, "n_head": 16}),
    "gpt2-large": ("gpt2", {"n_embd": 1280, "n_layer": 36, "n_head": 20}),
    "tiny-bert": ("bert", {"vocab_size": 128, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                           "intermediate_size": 48, "max_position_embeddings": 64}),
    "tiny-gpt2": ("gpt2", {"vocab_size": 128, "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64}),
}  # fmt: skip
DEFAULT_METHODS = "dense,pst,movement,magnitude,lora"


def build(model_name: str, batch_size: int, seq_len: int, seed: int = 0) -> tuple[Any, Any, dict[str, np.ndarray]]:
    """``(model, loss_fn, batch)``: random weights of the named shapes, a batch of random tokens."""
    from transformers import BertConfig, FlaxBertForSequenceClassification, FlaxGPT2LMHeadModel, GPT2Config

    family, overrides = MODELS[model_name]
    rng = np.random.default_rng(seed)
    if family == "bert":
        config = BertConfig(**overrides, num_labels=2)
        model = FlaxBertForSequenceClassification(config, seed=seed)
        loss_fn = classification_loss(model)
        limit = config.max_position_embeddings
    else:
        config = GPT2Config(**overrides)
        model = FlaxGPT2LMHeadModel(config, seed=seed)
        loss_fn = causal_lm_loss(model, label_smoothing=0.1)
        limit = config.n_positions
    if seq_len > limit:
        raise ValueError(f"--seq_len {seq_len} exceeds the model's {limit} positions")
    batch = {
        "input_ids": rng.integers(0, config.vocab_size, (batch_size, seq_len)).astype(np.int32),
        "attention_mask": np.ones((batch_size, seq_len), np.int32),
    }
    if family == "bert":
        batch |= {
            "token_type_ids": np.zeros((batch_size, seq_len), np.int32),
            "labels": rng.integers(0, 2, batch_size).astype(np.int32),
            "weights": np.ones(batch_size, np.float32),
        }
    return model, loss_fn, batch


def _timed(fn, args: tuple, repeats: int) -> tuple[list[float], Any]:
    """Wall times of ``repeats`` synced calls of ``fn(*args)``, and the last output."""
    times, out = [], None
    for _ in range(repeats):
        tick = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - tick)
    return times, out


def measure(name: str, model: Any, loss_fn: Any, batch: dict[str, np.ndarray], args: argparse.Namespace) -> dict:
    """One method's figures (see the module docstring)."""
    plan = make_plan(model.params, rules_for(model.config.model_type))
    method = make_method(name, plan, lora_rank=args.rank, final_sparsity=args.sparsity)
    sparsity = jnp.float32(args.sparsity if method.sparse else 0.0)
    tx = make_optimizer(1e-4, 10_000)
    mesh = make_mesh(jax.local_devices()[: args.num_devices])
    state, frozen = init_train_state(jax.random.key(0), model.params, method, tx, mesh)
    batch = shard_batch(batch, mesh)
    step = jit_train_step(make_train_step(loss_fn, method, tx), mesh).jitted

    lowered, breakdown = step.lower(state, frozen, batch, sparsity), None
    tick = time.perf_counter()
    if args.breakdown:  # the dump adds to the compile time
        compiled, breakdown = peak_memory.compile_with_breakdown(lowered)
    else:
        compiled = lowered.compile()
    compile_s = time.perf_counter() - tick
    times = []
    for _ in range(args.warmup + args.steps):  # the state is donated: feed each step's state to the next
        tick = time.perf_counter()
        state, metrics = jax.block_until_ready(compiled(state, frozen, batch, sparsity))
        times.append(time.perf_counter() - tick)
    if not np.isfinite(float(metrics["loss"])):
        raise RuntimeError(f"{name}: the loss is not finite")
    step_s = statistics.median(times[args.warmup :])

    mask_s = None
    if method.masks is not None:
        masks = jax.jit(method.masks).lower(state.trainable, frozen, sparsity).compile()
        times, _ = _timed(masks, (state.trainable, frozen, sparsity), args.warmup + args.steps)
        mask_s = statistics.median(times[args.warmup :])
    return {
        "method": name,
        "trainable_parameters": sum(x.size for x in jax.tree.leaves(state.trainable)),
        "optimizer_state_bytes": profiling.tree_bytes(state.opt_state),
        "compiled_step_memory": profiling.compiled_memory(compiled),
        "peak_breakdown_bytes": breakdown,
        "device_peak_bytes": profiling.device_peak_bytes(mesh.devices.flat[0]),
        "host_peak_rss_bytes": profiling.host_peak_rss_bytes(),
        "compile_s": compile_s,
        "median_step_s": step_s,
        "median_mask_s": mask_s,
        "mask_share": None if mask_s is None else mask_s / step_s,
    }


def _run_isolated(method: str, argv: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "one.json"
        command = [sys.executable, "-m", "experiments.benchmark", *argv, "--methods", method]
        env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
        subprocess.run([*command, "--no_isolate", "--output", str(out), "--quiet"], check=True, env=env)
        return json.loads(out.read_text())["results"][0]


def table(results: list[dict]) -> str:
    """The figures as a Markdown table, with ratios to dense fine-tuning and to movement pruning."""
    by_name = {r["method"]: r for r in results}
    dense, mvp = by_name.get("dense"), by_name.get("movement")
    mib = 2**20
    rows = [
        "| method | trainable | optimizer state (MiB) | vs MvP | step peak, XLA (MiB) | vs MvP | median step (s) "
        "| vs dense | mask share |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def ratio(a, b, fmt):
        return fmt.format(a / b) if a is not None and b else "n/a"

    def peak(r):
        return None if r is None or r["compiled_step_memory"] is None else r["compiled_step_memory"]["peak_bytes"]

    for r in results:
        cells = [
            r["method"],
            f"{r['trainable_parameters']:,}",
            f"{r['optimizer_state_bytes'] / mib:.1f}",
            ratio(r["optimizer_state_bytes"], mvp and mvp["optimizer_state_bytes"], "{:.2%}"),
            "n/a" if peak(r) is None else f"{peak(r) / mib:.0f}",
            ratio(peak(r), peak(mvp), "{:.2f}x"),
            f"{r['median_step_s']:.3f}",
            ratio(r["median_step_s"], dense and dense["median_step_s"], "{:.2f}x"),
            "-" if r["mask_share"] is None else f"{r['mask_share']:.1%}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def breakdown_table(results: list[dict]) -> str:
    """What is live at each method's peak (``--breakdown``), in MiB, as a Markdown table."""
    kinds = [kind for kind, _ in peak_memory.KINDS] + [peak_memory.OTHER, "total"]
    rows = ["| method | " + " | ".join(kinds) + " |", "| --- |" + " ---: |" * len(kinds)]
    for r in results:
        b = r.get("peak_breakdown_bytes")
        cells = ["n/a"] * len(kinds) if b is None else [f"{b[k] / 2**20:.0f}" for k in kinds]
        rows.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="bert-base", help=f"one of {', '.join(MODELS)} (random weights)")
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated, from {', '.join(METHOD_NAMES)}")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--rank", type=int, default=8, help="LoRA's rank (PST's ranks are 8/8)")
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    p.add_argument("--num_devices", type=int, help="use the first N local devices (default all)")
    p.add_argument("--output", help="JSON file (default runs/benchmark-MODEL.json)")
    p.add_argument("--no_isolate", action="store_true", help="run every method in this process")
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="also report what is live at each step's peak (model activations, frozen weights, the method's\n"
        "weights and masks, ...), from XLA's liveness dump (n/a where the backend writes none; checked on CPU)",
    )
    p.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    raw = sys.argv[1:] if argv is None else argv
    args = p.parse_args(raw)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    problems = [f"unknown method {m!r}" for m in methods if m not in METHOD_NAMES]
    if args.model not in MODELS:
        problems.append(f"unknown model {args.model!r}; choose from {', '.join(MODELS)}")
    if not 0.0 < args.sparsity < 1.0:
        problems.append(f"--sparsity must be in (0, 1), got {args.sparsity}")
    if min(args.batch_size, args.seq_len, args.steps) < 1 or args.warmup < 0:
        problems.append("--batch_size, --seq_len and --steps must be >= 1, --warmup >= 0")
    devices = args.num_devices or jax.local_device_count()
    if not 1 <= devices <= jax.local_device_count() or args.batch_size % devices:
        problems.append(
            f"--batch_size {args.batch_size} must split evenly over --num_devices {devices} "
            f"(of {jax.local_device_count()} local devices)"
        )
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        return 2

    out = Path(args.output or f"runs/benchmark-{args.model}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0]
    report = {
        "model": args.model,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "sparsity": args.sparsity,
        "steps": args.steps,
        "warmup": args.warmup,
        "device": f"{jax.local_device_count()} x {device.device_kind} ({device.platform})",
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "command": "python -m experiments.benchmark " + " ".join(raw),
        "results": [],
    }
    in_process = args.no_isolate or len(methods) == 1
    if in_process:
        model, loss_fn, batch = build(args.model, args.batch_size, args.seq_len)
    for i, method in enumerate(methods, 1):
        if not args.quiet:
            print(f"[{i}/{len(methods)}] {method} ...", file=sys.stderr, flush=True)
        result = measure(method, model, loss_fn, batch, args) if in_process else _run_isolated(method, _strip(raw))
        report["results"].append(result)
        out.write_text(json.dumps(report, indent=2) + "\n")  # after every method: a cut-off run keeps its figures
        if not args.quiet:
            print(
                f"    compile {result['compile_s']:.1f} s, median step {result['median_step_s']:.3f} s",
                file=sys.stderr,
                flush=True,
            )
    if not args.quiet:
        print(f"{args.model}, batch {args.batch_size} x {args.seq_len} tokens, sparsity {args.sparsity}, "
              f"{report['device']}, median of {args.steps} steps")  # fmt: skip
        print(table(report["results"]))
        if args.breakdown:
            print("\nLive at the peak of each compiled step (MiB), from XLA's liveness dump:")
            print(breakdown_table(report["results"]))
        print(f"JSON: {out}")
    return 0


def _strip(argv: list[str]) -> list[str]:
    """``argv`` without ``--methods``, ``--output`` and their values (the parent sets them per child)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--methods", "--output"):
            skip = True
        elif not a.startswith(("--methods=", "--output=")):
            out.append(a)
    return out


if __name__ == "__main__":
    sys.exit(main())
