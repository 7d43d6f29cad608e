"""What one train step costs per method, on a model built from its config with random weights (nothing downloaded).

For each method: trainable parameters and optimizer-state bytes (of the state actually built); memory of the
compiled train step from XLA's memory analysis, the device allocator's peak (GPU/TPU) and the process's peak
resident memory; compile time and the median step time; the mask share (the method's masks alone, over its step
time); optionally what is live at the step's peak (:mod:`pst_jax.training.peak_memory`).
``experiments/benchmark.py`` runs it per method, each in its own process, and prints :func:`table`.
"""

import os
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pst_jax.bench.models import CAUSAL_FAMILIES, MODELS, float32_bytes, model_config, positions_and_width
from pst_jax.core.rules import make_plan, rules_for
from pst_jax.methods.base import with_frozen_dtype
from pst_jax.methods.registry import make_method
from pst_jax.training import peak_memory, profiling
from pst_jax.training.losses import causal_lm_loss, classification_loss
from pst_jax.training.optim import make_optimizer
from pst_jax.training.sharding import make_mesh, shard_batch
from pst_jax.training.step import init_train_state, jit_train_step, make_train_step


def check_shapes(model_name: str, seq_len: int, rank: int) -> None:
    """A one-line ``ValueError`` where ``seq_len`` exceeds the model's positions, or ``rank`` its width (the
    smaller dimension of its smallest sparsified matrices, the ``width x width`` attention projections)."""
    positions, width = positions_and_width(model_config(model_name))
    if seq_len > positions:
        raise ValueError(f"--seq_len {seq_len} exceeds {model_name}'s {positions} positions; lower it")
    if rank > width:
        raise ValueError(f"--rank {rank} exceeds the {width} x {width} matrices of {model_name}; give at most {width}")


def check_fits_host(model_name: str) -> None:
    """A one-line ``ValueError`` where a named model's float32 weights alone exceed this host's memory."""
    if model_name not in MODELS:  # a folder: its weights are what they are
        return
    weights, memory = float32_bytes(model_name), host_memory_bytes()
    if weights > memory:
        raise ValueError(
            f"{model_name}'s float32 weights ({weights / 2**30:.0f} GiB) exceed this host's memory "
            f"({memory / 2**30:.0f} GiB); plan it from shapes with --mesh data=D,fsdp=F"
        )


def build(
    model_name: str, batch_size: int, seq_len: int, seed: int = 0, dtype: str = "float32"
) -> tuple[Any, Any, dict[str, np.ndarray]]:
    """``(model, loss_fn, batch)``: random weights of the named shapes (or the pretrained weights of a model
    folder: real weights have ties that random ones lack) computing in ``dtype``, a batch of random tokens."""
    check_shapes(model_name, seq_len, 1)
    check_fits_host(model_name)
    config = model_config(model_name)
    rng = np.random.default_rng(seed)
    model = _load(config, seed, None if model_name in MODELS else model_name, jnp.dtype(dtype))
    causal = config.model_type in CAUSAL_FAMILIES
    loss_fn = causal_lm_loss(model, label_smoothing=0.1) if causal else classification_loss(model)
    batch = {
        "input_ids": rng.integers(0, config.vocab_size, (batch_size, seq_len)).astype(np.int32),
        "attention_mask": np.ones((batch_size, seq_len), np.int32),
    }
    if not causal:
        batch |= {
            "token_type_ids": np.zeros((batch_size, seq_len), np.int32),
            "labels": rng.integers(0, 2, batch_size).astype(np.int32),
            "weights": np.ones(batch_size, np.float32),
        }
    return model, loss_fn, batch


def host_memory_bytes() -> int:
    """Physical memory of this host."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _load(config: Any, seed: int, folder: str | None, dtype: Any) -> Any:
    """The model of ``config`` computing in ``dtype``: from ``folder`` where given, else with random weights."""
    from transformers import FlaxAutoModelForCausalLM, FlaxAutoModelForSequenceClassification

    from pst_jax.models.decoders import MODEL_TYPES, load_decoder

    if config.model_type in MODEL_TYPES:
        return load_decoder(folder or config, seed=seed, dtype=dtype)
    auto_class = FlaxAutoModelForCausalLM if config.model_type == "gpt2" else FlaxAutoModelForSequenceClassification
    if folder:
        return auto_class.from_pretrained(folder, config=config, seed=seed, dtype=dtype)
    return auto_class.from_config(config, seed=seed, dtype=dtype)


def _timed(fn, args: tuple, repeats: int) -> tuple[list[float], Any]:
    """Wall times of ``repeats`` synced calls of ``fn(*args)``, and the last output."""
    times, out = [], None
    for _ in range(repeats):
        tick = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - tick)
    return times, out


def measure(
    name: str,
    model: Any,
    loss_fn: Any,
    batch: dict[str, np.ndarray],
    *,
    sparsity: float,
    rank: int,
    num_devices: int | None,
    warmup: int,
    steps: int,
    breakdown: bool,
    frozen_dtype: str = "float32",
) -> dict:
    """One method's figures (see the module docstring): ``steps`` timed steps after ``warmup`` untimed ones, on the
    first ``num_devices`` local devices (all where None); LoRA at ``rank``; ``breakdown`` adds what is live at the
    step's peak; frozen matrices are stored in ``frozen_dtype``."""
    plan = make_plan(model.params, rules_for(model.config.model_type))
    method = make_method(name, plan, lora_rank=rank, final_sparsity=sparsity)
    method = with_frozen_dtype(method, jnp.dtype(frozen_dtype))
    traced_sparsity = jnp.float32(sparsity if method.sparse else 0.0)
    tx = make_optimizer(method, 1e-4, 10_000)
    mesh = make_mesh(jax.local_devices()[:num_devices])
    state, frozen = init_train_state(jax.random.key(0), model.params, method, tx, mesh)
    batch = shard_batch(batch, mesh)
    step = jit_train_step(make_train_step(loss_fn, method, tx), mesh).jitted

    lowered, peak_breakdown = step.lower(state, frozen, batch, traced_sparsity), None
    tick = time.perf_counter()
    if breakdown:  # the dump adds to the compile time
        compiled, peak_breakdown = peak_memory.compile_with_breakdown(lowered)
    else:
        compiled = lowered.compile()
    compile_s = time.perf_counter() - tick
    times = []
    for _ in range(warmup + steps):  # the state is donated: feed each step's state to the next
        tick = time.perf_counter()
        state, metrics = jax.block_until_ready(compiled(state, frozen, batch, traced_sparsity))
        times.append(time.perf_counter() - tick)
    if not np.isfinite(float(metrics["loss"])):
        raise RuntimeError(f"{name}: the loss is not finite")
    step_s = statistics.median(times[warmup:])

    mask_s = None
    if method.masks is not None:
        masks = jax.jit(method.masks).lower(state.trainable, frozen, traced_sparsity).compile()
        times, _ = _timed(masks, (state.trainable, frozen, traced_sparsity), warmup + steps)
        mask_s = statistics.median(times[warmup:])
    return {
        "method": name,
        "trainable_parameters": sum(x.size for x in jax.tree.leaves(state.trainable)),
        "optimizer_state_bytes": profiling.tree_bytes(state.opt_state),
        "compiled_step_memory": profiling.compiled_memory(compiled),
        "peak_breakdown_bytes": peak_breakdown,
        "device_peak_bytes": profiling.device_peak_bytes(mesh.devices.flat[0]),
        "host_peak_rss_bytes": profiling.host_peak_rss_bytes(),
        "compile_s": compile_s,
        "median_step_s": step_s,
        "median_mask_s": mask_s,
        "mask_share": None if mask_s is None else mask_s / step_s,
    }


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
