"""Times PST's exact top-k mask (radix select) against a full sort, on BERT-base's matrix shapes.

    python -m experiments.benchmark_topk            # one 768x768 and one 768x3072 matrix, sparsity 0.9

Prints milliseconds per call (median of --repeats after a warm-up) and the implied cost for all
72 encoder matrices of BERT-base.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from pst_jax import keep_mask


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), sparsity {args.sparsity}")
    totals = {"radix select": 0.0, "sort": 0.0}
    for shape, count in (((768, 768), 48), ((768, 3072), 24)):
        x = jax.random.normal(jax.random.key(0), shape)
        for name, fn in (("radix select", keep_mask), ("sort", sort_mask)):
            ms = time_ms(jax.jit(lambda s, fn=fn: fn(s, args.sparsity)), x, args.repeats)
            totals[name] += count * ms
            print(f"{name:>12} {shape[0]}x{shape[1]}: {ms:8.2f} ms")
    for name, total in totals.items():
        print(f"{name:>12}, all 72 BERT-base matrices: {total / 1e3:6.2f} s")


if __name__ == "__main__":
    main()
