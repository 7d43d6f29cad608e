"""The settings every experiment shares: which method, its ranks and its sparsity schedule.

:class:`MethodConfig` is the base of :class:`~pst_jax.glue.config.GlueConfig` and
:class:`~pst_jax.nlg.config.NLGConfig`; :func:`check_run_settings` checks it (and the seed, devices and output
folder every task has) before anything is loaded, :func:`check_ranks` its ranks against the model's matrices, and
:func:`build_method` and :func:`sparsity_schedule` turn it into the method and the schedule a run trains with;
:func:`parameter_report` is what ``results.json`` says about the run's parameters.
"""

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from pst_jax.core.config import PSTConfig
from pst_jax.core.rules import Plan
from pst_jax.core.schedule import cubic_sparsity
from pst_jax.methods.base import Method, with_frozen_dtype
from pst_jax.methods.count import count_parameters
from pst_jax.methods.registry import METHOD_NAMES, make_method, trainable_parameters
from pst_jax.training import profiling
from pst_jax.training.errors import InputError
from pst_jax.training.settings import setting
from pst_jax.training.sharding import mesh_from_flag

#: The seeds both NumPy's generator and JAX's keys take.
MAX_SEED = 2**32 - 1
#: The ranks each method uses (the others use none).
METHOD_RANKS: dict[str, tuple[str, ...]] = {"pst": ("weight_rank", "mask_rank"), "lora": ("weight_rank",)}
#: The values of ``--dtype`` and ``--frozen_dtype``.
DTYPE_NAMES = ("float32", "bfloat16")


@dataclasses.dataclass
class MethodConfig:
    """The method and its sparsity schedule (cubic, as in movement pruning); see ``PST_METHOD.md``."""

    method: str = setting("pst", f"one of {', '.join(METHOD_NAMES)} (lora's rank is --weight_rank)")
    sparsity: float = setting(0.9, "final sparsity of each matrix")
    initial_sparsity: float = setting(0.0, "sparsity during the initial warm-up, where the cubic ramp starts")
    initial_warmup: float = setting(0.1, "fraction of steps dense")
    final_warmup: float = setting(0.3, "fraction at final sparsity")
    weight_rank: int = setting(8, "rank of the weight update U @ V (and LoRA's rank)")
    mask_rank: int = setting(8, "rank of the low-rank importance A @ B")
    beta: float = setting(1.0, "scale of the weight update U @ V")
    alpha1: float = setting(1.0, "scale of the low-rank importance A @ B")
    alpha2: float = setting(1.0, "scale of the structured importance R, C")
    weight_init_std: float | None = setting(
        None, "initial std of V in U @ V (default 1/sqrt(weight_rank); the authors': 1)"
    )
    train_head: bool = setting(
        True, "train only the PST factors, as the reference code", flag="freeze_head", invert=True
    )
    mesh: str | None = setting(
        None, "data=D,fsdp=F: devices split as a D x F grid; weights sharded over fsdp (default: data = all, fsdp=1)"
    )
    scores_learning_rate: float | None = setting(
        None, "movement pruning's scores (reference: 1e-2); default --learning_rate"
    )
    dtype: str = setting(
        "float32",
        f"compute dtype of the model ({' or '.join(DTYPE_NAMES)}); what is trained, and its optimizer "
        "state, stay float32",
    )
    frozen_dtype: str = setting(
        "float32",
        f"storage dtype of the frozen pretrained matrices ({' or '.join(DTYPE_NAMES)}; pst, lora); "
        "the adapted and masked kernels are formed in float32 from them",
    )

    @property
    def pst_config(self) -> PSTConfig:
        return PSTConfig(self.weight_rank, self.mask_rank, self.beta, self.alpha1, self.alpha2, self.weight_init_std)


def check_method_config(cfg: MethodConfig) -> None:
    """Raises a one-line ``ValueError`` naming the flag for any bad method setting (and any non-finite number
    among all of ``cfg``'s settings, a task's included)."""
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{field.name} must be a finite number, got {value}")
    if cfg.method not in METHOD_NAMES:
        raise ValueError(f"unknown method {cfg.method!r}; choose from {', '.join(METHOD_NAMES)}")
    for name in ("sparsity", "initial_sparsity"):
        value = getattr(cfg, name)
        if not 0.0 <= value < 1.0:
            raise ValueError(f"--{name} must be in [0, 1), got {value}")
    if cfg.method == "soft_movement" and (cfg.sparsity == 0.0 or cfg.initial_sparsity != 0.0):
        raise ValueError(
            f"soft_movement needs --sparsity > 0 and --initial_sparsity 0 (its threshold ramps from 0), "
            f"got {cfg.sparsity} and {cfg.initial_sparsity}"
        )
    for name in ("initial_warmup", "final_warmup"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ValueError(f"--{name} must be in [0, 1], got {getattr(cfg, name)}")
    if cfg.initial_warmup + cfg.final_warmup > 1.0:
        raise ValueError(f"--initial_warmup + --final_warmup must be <= 1, got {cfg.initial_warmup + cfg.final_warmup}")
    for name in ("weight_rank", "mask_rank"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name} must be a positive integer, got {getattr(cfg, name)}")
    if cfg.weight_init_std is not None and not (math.isfinite(cfg.weight_init_std) and cfg.weight_init_std > 0):
        raise ValueError(f"--weight_init_std must be a positive number, got {cfg.weight_init_std}")
    if cfg.scores_learning_rate is not None and cfg.scores_learning_rate <= 0:
        raise ValueError(f"--scores_learning_rate must be positive, got {cfg.scores_learning_rate}")
    for name in ("dtype", "frozen_dtype"):  # None: a task's recipe decides (GLUE's embedded default)
        if getattr(cfg, name) is not None and getattr(cfg, name) not in DTYPE_NAMES:
            raise ValueError(f"unknown --{name} {getattr(cfg, name)!r}; choose from {', '.join(DTYPE_NAMES)}")


def check_run_settings(cfg: MethodConfig) -> None:
    r"""What every task checks first: the method's settings and ``--num_devices`` (if the config has it), as
    one-line :class:`~pst_jax.training.errors.InputError`\ s."""
    try:
        check_method_config(cfg)
    except ValueError as error:
        raise InputError(str(error)) from None
    every = getattr(cfg, "checkpoint_every_steps", 1)
    if not (isinstance(every, int) and every >= 1):
        raise InputError(f"--checkpoint_every_steps must be a positive integer, got {every}")
    devices = getattr(cfg, "num_devices", None)
    if devices is not None and not 1 <= devices <= jax.local_device_count():
        raise InputError(f"--num_devices must be in [1, {jax.local_device_count()}], got {devices}")
    try:
        run_mesh(cfg)
    except ValueError as error:
        raise InputError(str(error)) from None
    seed = getattr(cfg, "seed", None)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise InputError(f"--seed must be in [0, {MAX_SEED}], got {seed}")
    if getattr(cfg, "output_dir", None) is not None:
        check_output_dir(cfg.output_dir)


def check_output_dir(output_dir: str | Path) -> None:
    """An :class:`InputError` unless ``output_dir`` is, or can be made, a writable folder; it creates nothing.

    Checked before any weights load, so a run never fails at its first write (``--output_dir FILE/run``).
    """
    path = Path(output_dir).expanduser()
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        what = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise InputError(f"--output_dir {output_dir} {what}, not a folder; give a folder (new or existing)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"--output_dir {output_dir}: {existing} is not writable; give a folder you can write")


def check_ranks(cfg: MethodConfig, plan: Plan) -> None:
    """An :class:`InputError` where a rank the method uses exceeds a sparsified matrix's smaller dimension.

    A rank-``r`` factor of a ``(d_in, d_out)`` matrix with ``r > min(d_in, d_out)`` adds parameters but no rank.
    """
    if not plan.matrices:
        return
    limit = min(min(m.d_in, m.d_out) for m in plan.matrices)
    for name in METHOD_RANKS.get(cfg.method, ()):
        rank = getattr(cfg, name)
        if rank > limit:
            m = next(m for m in plan.matrices if min(m.d_in, m.d_out) < rank)
            raise InputError(
                f"--{name} {rank} exceeds the smaller dimension of the sparsified matrix {m.name} ({m.d_in} x "
                f"{m.d_out}); give at most {limit}"
            )


def run_mesh(cfg: MethodConfig) -> Mesh:
    """The mesh of ``--mesh`` over the first ``--num_devices`` local devices (all of them by default; every
    device of every process in a multi-process run)."""
    if jax.process_count() > 1:  # every device of every process
        return mesh_from_flag(cfg.mesh, jax.devices())
    return mesh_from_flag(cfg.mesh, jax.local_devices()[: getattr(cfg, "num_devices", None)])


def build_method(cfg: MethodConfig, plan: Plan) -> Method:
    """The :class:`~pst_jax.methods.base.Method` that ``cfg`` names, over the matrices of ``plan``, its frozen
    matrices stored in ``cfg.frozen_dtype`` (:func:`~pst_jax.methods.base.with_frozen_dtype`)."""
    method = make_method(
        cfg.method,
        plan,
        config=cfg.pst_config,
        train_head=cfg.train_head,
        lora_rank=cfg.weight_rank,
        final_sparsity=cfg.sparsity,
    )
    return with_frozen_dtype(method, jnp.dtype(cfg.frozen_dtype))


def compute_dtype(cfg: MethodConfig) -> jnp.dtype:
    """The dtype the model computes in (``--dtype``): what a task passes to ``from_pretrained(..., dtype=...)``.

    The params stay float32 as loaded: Hugging Face's Flax modules cast them to it in each layer (``nn.Dense``,
    GPT-2's ``Conv1D``, ``nn.Embed``), so the float32 kernels the methods form are rounded there, in the forward
    pass only; the gradients reach the trained params through that cast as float32.
    """
    return jnp.dtype(cfg.dtype)


def sparsity_schedule(cfg: MethodConfig, method: Method, total_steps: int) -> tuple[Callable[[int], float], float]:
    """``(schedule, target)``: the sparsity of each step and the final one (0 for methods that do not prune)."""
    if not method.sparse:
        return (lambda step: 0.0), 0.0
    schedule = cubic_sparsity(total_steps, cfg.sparsity, cfg.initial_sparsity, cfg.initial_warmup, cfg.final_warmup)
    return (lambda step: float(schedule(step))), cfg.sparsity


def parameter_report(cfg: MethodConfig, params: Any, plan: Plan, opt_state: Any) -> dict[str, Any]:
    """Trainable and total parameters of the run, against movement pruning's, and its optimizer-state bytes."""
    count = count_parameters(params, plan, cfg.pst_config, cfg.train_head)
    trainable = trainable_parameters(
        cfg.method, params, plan, rank=cfg.weight_rank, config=cfg.pst_config, train_head=cfg.train_head
    )
    return {
        "trainable": trainable,
        "total": count.model,
        "trainable_fraction": trainable / count.model,
        "pst_factors": count.pst if cfg.method == "pst" else 0,
        "head": count.head,
        "movement_pruning_trainable": count.movement_pruning_trainable,
        "percent_of_movement_pruning": 100.0 * trainable / count.movement_pruning_trainable,
        "optimizer_state_bytes": profiling.tree_bytes(opt_state),
    }
