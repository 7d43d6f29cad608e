"""Per-device memory of the compiled train step on a mesh, nothing allocated: ``python -m experiments.memory_plan``.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m experiments.memory_plan --model gpt2-medium \\
        --mesh fsdp=8 --methods pst,lora,movement

On a CPU host the devices can be fake (as above): the plan is XLA's analysis of the step compiled for them.
"""

import argparse
import sys

import jax

from pst_jax.bench.memory_plan import plan_step
from pst_jax.bench.models import MODELS
from pst_jax.methods.registry import METHOD_NAMES
from pst_jax.models.decoders import MODEL_TYPES
from pst_jax.training.sharding import mesh_from_flag


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="gpt2-medium", help=f"one of {', '.join(MODELS)}")
    p.add_argument("--methods", default="pst,lora,movement", help=f"comma-separated, from {', '.join(METHOD_NAMES)}")
    p.add_argument("--mesh", default=None, help="data=D,fsdp=F over all devices (default data = all)")
    p.add_argument("--batch_size", type=int, default=8, help="global batch (default 8)")
    p.add_argument("--seq_len", type=int, default=512, help="tokens per row (default 512)")
    p.add_argument("--rank", type=int, default=8, help="LoRA's rank (PST's ranks are 8/8)")
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="compute dtype and storage of the frozen matrices (trainable parameters and optimizer state stay\n"
        "float32)",
    )
    p.add_argument(
        "--remat",
        action="store_true",
        help="recompute each decoder layer in the backward pass (Llama, Mistral, Gemma): what experiments.nlg's\n"
        "--remat does",
    )
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    problems = [
        f"unknown method {m!r}; choose from {', '.join(METHOD_NAMES)}" for m in methods if m not in METHOD_NAMES
    ]
    if args.model not in MODELS:
        problems.append(f"unknown model {args.model!r}; choose from {', '.join(MODELS)}")
    elif args.remat and MODELS[args.model][0] not in MODEL_TYPES:
        problems.append(f"--remat takes a Llama, Mistral or Gemma model; {args.model} is not one")
    for name in ("batch_size", "seq_len", "rank"):
        if getattr(args, name) < 1:
            problems.append(f"--{name} must be a positive integer, got {getattr(args, name)}")
    try:
        mesh = mesh_from_flag(args.mesh, jax.devices())
    except ValueError as error:
        problems.append(str(error))
    if not problems and args.batch_size % mesh.devices.size:
        problems.append(f"--batch_size {args.batch_size} must split evenly over the {mesh.devices.size} devices")
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        return 2
    dtype = f"{args.dtype}, remat" if args.remat else args.dtype
    shape = f"batch {args.batch_size} x {args.seq_len}, {dtype}, mesh {dict(mesh.shape)}"
    print(f"{args.model}, {shape}, GiB per device")
    print("| method | arguments | temporaries | outputs | total |\n| --- | ---: | ---: | ---: | ---: |")
    for method in methods:
        plan = plan_step(args.model, method, mesh, args.batch_size, args.seq_len, args.rank, args.dtype, args.remat)
        gib = {k: v / 2**30 for k, v in plan["bytes"].items()}
        print(
            f"| {method} | {gib['arguments']:.2f} | {gib['temporaries']:.2f} | {gib['outputs']:.2f} "
            f"| {plan['total'] / 2**30:.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
