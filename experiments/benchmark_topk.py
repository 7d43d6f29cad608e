"""Times PST's exact top-k mask, by both selects (radix, bisection), against a full sort, on a model's matrix shapes.

    python -m experiments.benchmark_topk            # one 768x768 and one 768x3072 matrix, sparsity 0.9
    python -m experiments.benchmark_topk --shapes gpt2-medium   # one 1024x1024 and one 1024x4096 matrix
    python -m experiments.benchmark_topk --methods pst,movement,magnitude   # whole BERT-base, per method

Prints the backend, milliseconds per call of each (median of --repeats after a warm-up) and the implied cost
for all the model's pruned matrices (BERT-base: 72 encoder matrices; GPT-2 Medium: 144, q, k and v split).
``keep_mask`` picks the radix select on CPU and the bisection elsewhere; both are timed here. With
``--methods``: for each method, the compile time and the run time of one jitted forward and backward through
its effective params on BERT-base (random weights), masks of all 72 matrices included (no model forward).
"""

import argparse
import functools
import statistics
import sys
import time

import jax
import jax.numpy as jnp

from pst_jax import keep_mask
from pst_jax.methods.registry import METHOD_NAMES

#: Each model's pruned matrix shapes and how many of each (GPT-2's c_fc and c_proj, 4096x1024 and 1024x4096,
#: have the same size: one shape stands for both).
SHAPES = {
    "bert-base": (((768, 768), 48), ((768, 3072), 24)),
    "gpt2-medium": (((1024, 1024), 96), ((1024, 4096), 48)),
}
SELECTS = {"radix select": "radix", "bisection": "bisect"}


def sort_mask(scores: jax.Array, sparsity: float) -> jax.Array:
    """The textbook way: a full sort per matrix (what the reference PyTorch code does)."""
    flat = scores.ravel()
    k = int(sparsity * flat.size)
    threshold = jnp.sort(flat)[k]
    return (scores >= threshold).reshape(scores.shape)


def time_ms(fn, x, repeats: int) -> float:
    jax.block_until_ready(fn(x))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def time_methods(names: list[str], sparsity: float, repeats: int) -> None:
    """Compile and run time of value-and-grad through each method's effective params, on BERT-base."""
    from transformers import BertConfig, FlaxBertForSequenceClassification

    from pst_jax import BERT_RULES, make_method, make_plan
    from pst_jax.core.rules import flatten

    model = FlaxBertForSequenceClassification(BertConfig(), seed=0)
    plan = make_plan(model.params, BERT_RULES)
    for name in names:
        method = make_method(name, plan)
        trainable, frozen = jax.jit(method.init)(jax.random.key(0), model.params)

        def objective(trainable, frozen, s, method=method):
            params = flatten(method.effective_params(trainable, frozen, s))
            return sum(jnp.sum(params[m.path] ** 2) for m in plan.matrices)

        start = time.perf_counter()
        step = jax.jit(jax.value_and_grad(objective)).lower(trainable, frozen, jnp.float32(sparsity)).compile()
        compile_s = time.perf_counter() - start
        ms = time_ms(lambda t, step=step, frozen=frozen: step(t, frozen, jnp.float32(sparsity)), trainable, repeats)
        print(f"{name:>10}: compile {compile_s:6.1f} s, forward + backward {ms / 1e3:6.3f} s", flush=True)


def _problem(args: argparse.Namespace) -> str | None:
    """The first bad flag, as one line naming its value and the fix; None if all are good."""
    if not 0.0 <= args.sparsity < 1.0:  # also refuses nan
        return f"--sparsity must be in [0, 1), got {args.sparsity}"
    if args.repeats < 1:
        return f"--repeats must be a positive integer, got {args.repeats}"
    if args.shapes is not None and args.shapes not in SHAPES:
        return f"unknown --shapes {args.shapes!r}; choose from {', '.join(SHAPES)}"
    if args.shapes is not None and args.methods is not None:
        return "--shapes times the selects alone; --methods always runs on BERT-base: give one of the two"
    methods = [] if args.methods is None else args.methods.split(",")
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown:
        return f"unknown method {unknown[0]!r} in --methods; choose from {', '.join(METHOD_NAMES)}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.9, help="share of each matrix pruned (default 0.9)")
    parser.add_argument(
        "--repeats", type=int, default=10, help="timed calls after a warm-up; the median is printed (default 10)"
    )
    parser.add_argument("--shapes", help=f"whose matrix shapes: {' or '.join(SHAPES)} (default bert-base)")
    parser.add_argument("--methods", help="comma-separated methods to time on BERT-base instead")
    args = parser.parse_args(argv)
    if (problem := _problem(args)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), sparsity {args.sparsity}")
    if args.methods:
        time_methods(args.methods.split(","), args.sparsity, args.repeats)
        return 0
    model = args.shapes or "bert-base"
    fns = {name: functools.partial(keep_mask, select=select) for name, select in SELECTS.items()}
    fns["sort"] = sort_mask
    totals = dict.fromkeys(fns, 0.0)
    for shape, count in SHAPES[model]:
        x = jax.random.normal(jax.random.key(0), shape)
        for name, fn in fns.items():
            ms = time_ms(jax.jit(lambda s, fn=fn: fn(s, args.sparsity)), x, args.repeats)
            totals[name] += count * ms
            print(f"{name:>12} {shape[0]}x{shape[1]}: {ms:8.2f} ms", flush=True)
    n = sum(count for _, count in SHAPES[model])
    for name, total in totals.items():
        print(f"{name:>12}, all {n} {model} matrices: {total / 1e3:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
