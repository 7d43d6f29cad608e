"""PST on one matrix: factor initialisation, importance score and the masked adapted kernel.

All functions use the Flax ``Dense`` layout, kernel ``W0`` of shape ``(d_in, d_out)``. The method,
from Li et al., "Parameter-Efficient Sparsity for Large Language Models Fine-Tuning" (IJCAI 2022):

    W~ = W0 + beta * U @ V
    S  = |W~| + alpha1 * A @ B + alpha2 * (C[:, None] + R[None, :])
    M  = top-k mask of S pruning floor(s * numel) entries (straight-through gradient)
    y  = x @ (M * W~) + bias

``W0`` may be stored in bfloat16 (``--frozen_dtype bfloat16``); ``W~``, ``S`` and ``M * W~`` are formed in
float32 all the same (:func:`at_least_float32`): a bfloat16 sum would round away a small ``U @ V`` (an update
of 1e-4 relative to ``W0`` is far below bfloat16's 2**-9 spacing), and with it most of what the factors learn.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from pst_jax.core.config import PSTConfig
from pst_jax.core.topk import topk_mask
from pst_jax.core.types import Array, MatrixFactors


def factor_shapes(d_in: int, d_out: int, config: PSTConfig = PSTConfig()) -> dict[str, tuple[int, ...]]:
    """Shapes of the six factors of a ``(d_in, d_out)`` kernel.

    Example:
      >>> factor_shapes(4, 6, PSTConfig(weight_rank=2, mask_rank=3))["B"]
      (3, 6)
    """
    rw, rm = config.weight_rank, config.mask_rank
    return {
        "U": (d_in, rw),
        "V": (rw, d_out),
        "A": (d_in, rm),
        "B": (rm, d_out),
        "R": (d_out,),
        "C": (d_in,),
    }


def num_factor_params(d_in: int, d_out: int, config: PSTConfig = PSTConfig()) -> int:
    """Trainable parameters of one matrix: ``(r_w + r_m) * (d_in + d_out) + d_in + d_out``."""
    return sum(math.prod(s) for s in factor_shapes(d_in, d_out, config).values())


def init_factors(
    key: Array, d_in: int, d_out: int, config: PSTConfig = PSTConfig(), dtype=jnp.float32
) -> dict[str, Array]:
    """Initial factors of one kernel: ``V`` normal with std :attr:`PSTConfig.v_std`, ``B`` standard normal, the
    others zeros.

    With ``U = A = R = C = 0`` the adapted weight is exactly ``W0`` and the importance exactly
    ``|W0|``: step 0 of PST is magnitude pruning of the pretrained model.

    Example:
      >>> f = init_factors(jax.random.key(0), 4, 6)
      >>> f["U"].shape, float(abs(f["U"]).sum())
      ((4, 8), 0.0)
    """
    shapes = factor_shapes(d_in, d_out, config)
    key_v, key_b = jax.random.split(key)
    factors = {name: jnp.zeros(shape, dtype) for name, shape in shapes.items()}
    factors["V"] = config.v_std * jax.random.normal(key_v, shapes["V"], dtype)
    factors["B"] = jax.random.normal(key_b, shapes["B"], dtype)
    return factors


def at_least_float32(x: Array) -> Array:
    """``x`` upcast to float32 if it is a narrower float (a bfloat16 frozen weight); otherwise ``x`` itself.

    Example:
      >>> at_least_float32(jnp.ones(2, jnp.bfloat16)).dtype, at_least_float32(jnp.ones(2)).dtype
      (dtype('float32'), dtype('float32'))
    """
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def adapted_kernel(kernel: Array, factors: MatrixFactors, config: PSTConfig = PSTConfig()) -> Array:
    """``W~ = W0 + beta * U @ V``, in float32 (or wider) whatever ``W0``'s storage dtype.

    Example:
      >>> w0 = jnp.ones((2, 2), jnp.bfloat16)
      >>> f = {"U": jnp.full((2, 1), 1e-3), "V": jnp.ones((1, 2))}
      >>> w = adapted_kernel(w0, f)
      >>> w.dtype, float(w[0, 0] - 1.0) == float(jnp.float32(1.0 + 1e-3) - 1.0)
      (dtype('float32'), True)
    """
    update = factors["U"] @ factors["V"]
    dtype = jnp.promote_types(jnp.promote_types(kernel.dtype, update.dtype), jnp.float32)
    return kernel.astype(dtype) + config.beta * update.astype(dtype)


def importance(adapted: Array, factors: MatrixFactors, config: PSTConfig = PSTConfig()) -> Array:
    """``S = |W~| + alpha1 * A @ B + alpha2 * (C[:, None] + R[None, :])``.

    The magnitude term is not cut from the gradient: ``U`` and ``V`` also learn through it.
    """
    low_rank = factors["A"] @ factors["B"]
    structured = factors["C"][:, None] + factors["R"][None, :]
    return jnp.abs(adapted) + config.alpha1 * low_rank + config.alpha2 * structured


def check_sparsity(sparsity) -> None:
    """Raises ``ValueError`` for a host number outside ``[0, 1)``; arrays pass unchecked (no sync)."""
    if isinstance(sparsity, (int, float, np.number)) and not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")


def masked_kernel(
    kernel: Array, factors: MatrixFactors, sparsity: Array | float, config: PSTConfig = PSTConfig()
) -> Array:
    """PST's effective kernel ``M * (W0 + beta * U @ V)`` for one ``(d_in, d_out)`` matrix.

    Differentiable in ``factors`` (the mask has a straight-through gradient) and jit-friendly:
    ``sparsity`` may be a traced scalar, so changing it does not retrace.

    Args:
      kernel: frozen pretrained kernel ``W0``, shape ``(d_in, d_out)``.
      factors: mapping with keys ``"U", "V", "A", "B", "R", "C"`` (see :func:`init_factors`).
      sparsity: fraction of entries to prune, in ``[0, 1)``.
      config: ranks and scalars.

    Returns:
      The masked adapted kernel, shaped as ``kernel``, in float32 (or ``kernel``'s dtype if wider), with exactly
      ``floor(sparsity * kernel.size)`` zeros forced by the mask.

    Example:
      >>> w = jnp.arange(1.0, 7.0).reshape(2, 3)
      >>> masked_kernel(w, init_factors(jax.random.key(0), 2, 3), 0.5).tolist()
      [[0.0, 0.0, 0.0], [4.0, 5.0, 6.0]]
    """
    check_sparsity(sparsity)
    adapted = adapted_kernel(kernel, factors, config)
    scores = importance(adapted, factors, config)
    return topk_mask(scores, jnp.asarray(sparsity, jnp.float32)) * adapted
