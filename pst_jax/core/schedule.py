"""The cubic sparsity schedule of movement pruning, used by PST, as a pure ``step -> sparsity``."""

from collections.abc import Callable

import jax.numpy as jnp

from pst_jax.core.types import Array


def cubic_sparsity(
    total_steps: int,
    final_sparsity: float = 0.9,
    initial_sparsity: float = 0.0,
    initial_warmup: float = 0.1,
    final_warmup: float = 0.3,
) -> Callable[[Array | int], Array]:
    """Cubic sparsity schedule over ``T = total_steps`` optimizer steps.

    ``s(t) = s_init`` for ``t <= w_i T``; ``s_final`` for ``t > T - w_f T``; otherwise
    ``s_final + (s_init - s_final) * (1 - (t - w_i T) / (T - (w_i + w_f) T)) ** 3``.
    Step ``t`` counts the optimizer steps already taken: the forward pass of step ``t`` uses
    ``s(t)``, the schedule's value after the previous step (as in movement pruning's code).

    Args:
      total_steps: ``T``.
      final_sparsity: ``s_final``, in ``[0, 1)``.
      initial_sparsity: ``s_init``, in ``[0, 1)``.
      initial_warmup: ``w_i``, fraction of ``T`` kept at ``s_init`` (dense warm-up by default).
      final_warmup: ``w_f``, fraction of ``T`` at the target sparsity at the end.

    Returns:
      A pure function of the step (Python int or traced integer) returning a float32 scalar.

    Example:
      >>> s = cubic_sparsity(100, final_sparsity=0.9)
      >>> [round(float(s(t)), 4) for t in (0, 10, 40, 70, 71, 100)]
      [0.0, 0.0, 0.7875, 0.9, 0.9, 0.9]
    """
    for name, value in (("final_sparsity", final_sparsity), ("initial_sparsity", initial_sparsity)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    for name, value in (("initial_warmup", initial_warmup), ("final_warmup", final_warmup)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if initial_warmup + final_warmup > 1.0:
        raise ValueError(f"initial_warmup + final_warmup must be <= 1, got {initial_warmup} + {final_warmup}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")

    start = initial_warmup * total_steps
    end = total_steps - final_warmup * total_steps
    ramp = max(end - start, 1e-12)  # avoid 0/0 when there is no ramp; the where() picks an end value

    def schedule(step: Array | int) -> Array:
        t = jnp.asarray(step, jnp.float32)
        progress = jnp.clip((t - start) / ramp, 0.0, 1.0)
        ramped = final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - progress) ** 3
        value = jnp.where(t <= start, initial_sparsity, jnp.where(t > end, final_sparsity, ramped))
        return value.astype(jnp.float32)

    return schedule
