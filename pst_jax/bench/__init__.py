"""Benchmarks: what one train step costs per method (:mod:`~pst_jax.bench.step_cost`), for
``experiments/benchmark.py``."""
