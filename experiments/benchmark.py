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
    python -m experiments.benchmark --model embedded --batch_size 32 --seq_len 64 --methods dense,pst  # real weights

With ``--mesh data=D,fsdp=F`` it prints the memory plan instead (per-device bytes of each method's step compiled
for that mesh from shapes alone, nothing allocated or timed; :mod:`experiments.memory_plan`):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m experiments.benchmark --model gpt2-xl \
        --mesh fsdp=8 --methods pst,movement --batch_size 8 --seq_len 512
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax

from experiments import memory_plan
from pst_jax.bench.models import MODELS
from pst_jax.bench.step_cost import breakdown_table, build, check_fits_host, check_shapes, measure, table
from pst_jax.methods.registry import METHOD_NAMES
from pst_jax.training.errors import InputError

DEFAULT_METHODS = "dense,pst,movement,magnitude,lora"


def _run_isolated(method: str, argv: list[str]) -> dict | None:
    """One method's figures from a child process; None where it failed (its error is on stderr)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "one.json"
        command = [sys.executable, "-m", "experiments.benchmark", *argv, "--methods", method]
        env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
        if subprocess.run([*command, "--no_isolate", "--output", str(out), "--quiet"], env=env).returncode:
            return None
        return json.loads(out.read_text())["results"][0]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model",
        default="bert-base",
        help=f"one of {', '.join(MODELS)} (random weights), or pretrained weights: a model folder, or\n"
        "embedded (the offline default's MiniLM)",
    )
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated, from {', '.join(METHOD_NAMES)}")
    p.add_argument("--batch_size", type=int, default=32, help="global batch of the timed step (default 32)")
    p.add_argument("--seq_len", type=int, default=128, help="tokens per row (default 128)")
    p.add_argument("--sparsity", type=float, default=0.9, help="sparsity the step runs at, in [0, 1) (default 0.9)")
    p.add_argument("--rank", type=int, default=8, help="LoRA's rank (PST's ranks are 8/8)")
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="compute dtype and storage of the frozen matrices (default float32; the GLUE embedded default's is\n"
        "bfloat16); trainable parameters and optimizer state stay float32",
    )
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    p.add_argument("--num_devices", type=int, help="use the first N local devices (default all)")
    p.add_argument("--output", help="JSON file (default runs/benchmark-MODEL.json)")
    p.add_argument("--mesh", help="data=D,fsdp=F: print the memory plan for this mesh instead of timing steps")
    p.add_argument("--remat", action="store_true", help="with --mesh: plan with each decoder layer recomputed")
    p.add_argument("--no_isolate", action="store_true", help="run every method in this process")
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="also report what is live at each step's peak (model activations, frozen weights, the method's\n"
        "weights and masks, ...), from XLA's liveness dump (n/a where the backend writes none; checked on CPU)",
    )
    p.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(raw)
    args.label = args.model if args.model in MODELS or args.model == "embedded" else Path(args.model).name
    if args.model == "embedded":
        args.model = _embedded_model()
    if args.mesh is not None:
        return memory_plan.main(_plan_argv(args))
    if args.remat:
        print("error: --remat is for the memory plan: give --mesh data=D,fsdp=F too", file=sys.stderr)
        return 2
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    problems = _problems(args, methods)
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        return 2
    out = Path(args.output or f"runs/benchmark-{args.label}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0]
    report = {
        "model": args.model,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "sparsity": args.sparsity,
        "dtype": args.dtype,
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
        model, loss_fn, batch = build(args.model, args.batch_size, args.seq_len, dtype=args.dtype)
    for i, method in enumerate(methods, 1):
        if not args.quiet:
            print(f"[{i}/{len(methods)}] {method} ...", file=sys.stderr, flush=True)
        result = (
            measure(
                method,
                model,
                loss_fn,
                batch,
                sparsity=args.sparsity,
                rank=args.rank,
                num_devices=args.num_devices,
                warmup=args.warmup,
                steps=args.steps,
                breakdown=args.breakdown,
                frozen_dtype=args.dtype,
            )
            if in_process
            else _run_isolated(method, _strip(raw))
        )
        if result is None:
            print(f"error: {method} failed in its own process (its error is above)", file=sys.stderr)
            return 1
        report["results"].append(result)
        out.write_text(json.dumps(report, indent=2) + "\n")  # after every method: a cut-off run keeps its figures
        if not args.quiet:
            print(
                f"    compile {result['compile_s']:.1f} s, median step {result['median_step_s']:.3f} s",
                file=sys.stderr,
                flush=True,
            )
    if not args.quiet:
        _print_tables(args, report, out)
    return 0


def _print_tables(args: argparse.Namespace, report: dict, out: Path) -> None:
    print(f"{args.label}, batch {args.batch_size} x {args.seq_len} tokens, {args.dtype}, sparsity {args.sparsity}, "
          f"{report['device']}, median of {args.steps} steps")  # fmt: skip
    print(table(report["results"]))
    if args.breakdown:
        print("\nLive at the peak of each compiled step (MiB), from XLA's liveness dump:")
        print(breakdown_table(report["results"]))
    print(f"JSON: {out}")


def _problems(args: argparse.Namespace, methods: list[str]) -> list[str]:
    """What is wrong with the flags, each as one line naming the value and the fix (checked before any model is
    built, so a child process never fails on them)."""
    problems = [
        f"unknown method {m!r}; choose from {', '.join(METHOD_NAMES)}" for m in methods if m not in METHOD_NAMES
    ]
    if not methods:
        problems.append(f"--methods names no method; choose from {', '.join(METHOD_NAMES)}")
    if args.model not in MODELS and not (Path(args.model) / "config.json").is_file():
        problems.append(f"unknown model {args.model!r}; choose from {', '.join(MODELS)}, embedded, or a model folder")
    if not 0.0 <= args.sparsity < 1.0:  # also refuses nan
        problems.append(f"--sparsity must be in [0, 1), got {args.sparsity}")
    for name in ("batch_size", "seq_len", "steps", "rank"):
        if getattr(args, name) < 1:
            problems.append(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.warmup < 0:
        problems.append(f"--warmup must be >= 0, got {args.warmup}")
    count = jax.local_device_count()
    if args.num_devices is not None and not 1 <= args.num_devices <= count:
        problems.append(f"--num_devices must be in [1, {count}], got {args.num_devices}")
    elif args.batch_size >= 1 and args.batch_size % (args.num_devices or count):
        problems.append(
            f"--batch_size {args.batch_size} must split evenly over --num_devices {args.num_devices or count} "
            f"(of {count} local devices)"
        )
    if not problems and args.seq_len >= 1 and args.rank >= 1:
        try:
            check_shapes(args.model, args.seq_len, args.rank)
            check_fits_host(args.model)
        except ValueError as error:
            problems.append(str(error))
    output = Path(args.output or f"runs/benchmark-{args.label}.json")
    existing = next((p for p in output.parents if p.exists()), Path("."))
    if output.is_dir():
        problems.append(f"--output {output} is a folder; give a JSON file's path")
    elif not existing.is_dir():
        problems.append(f"--output {output} lies under {existing}, which is a file; give a JSON file's path")
    return problems


def _plan_argv(args: argparse.Namespace) -> list[str]:
    """The memory plan's flags for the benchmark's (its model, methods, mesh and batch shape)."""
    names = ("model", "methods", "mesh", "batch_size", "seq_len", "rank", "dtype")
    return [item for name in names for item in (f"--{name}", str(getattr(args, name)))] + ["--remat"] * args.remat


def _embedded_model() -> str:
    """The folder of the offline default's pretrained MiniLM (``--model embedded``)."""
    from pst_jax.glue.sources import embedded_model_path

    try:
        return embedded_model_path()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


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
