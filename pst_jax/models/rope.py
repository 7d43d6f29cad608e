"""Rotary position embeddings (RoPE) as a Hugging Face decoder config defines them.

transformers' Flax Llama, Mistral and Gemma build their sinusoids with base 10000 whatever the config says;
this module reads ``rope_theta``, ``head_dim`` and ``rope_scaling`` the way transformers' PyTorch models do
(``transformers/modeling_rope_utils.py``), for the scaling types ``default``, ``linear``, ``dynamic`` and
``llama3``. Any other type (``yarn``, ``longrope``) or a ``partial_rotary_factor`` below 1 is refused with a
one-line :class:`ValueError`.

``dynamic`` (NTK-aware) scaling depends on the sequence: PyTorch recomputes the frequencies when a call's
longest position ``L = max(position_ids) + 1`` exceeds ``max_position_embeddings = M``, with base
``theta * (factor * L / M - (factor - 1)) ** (dim / (dim - 2))`` (unscaled when ``L <= M``). Here that is
a pure function of the call's ``position_ids`` (computed inside the traced program), which is what a
fresh PyTorch model computes on every call. PyTorch also keeps, as module state, the longest length seen so
far: a later shorter call that is still longer than ``M`` reuses the longer call's frequencies. That
history is not reproduced (it makes a model's output depend on the calls before it).

Frequencies are computed in float64 on the host and applied in float32, as PyTorch applies them in float32.
"""

import math
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from pst_jax.core.types import Array

ROPE_TYPES = ("default", "linear", "dynamic", "llama3")
_LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


class Rope(NamedTuple):
    """What a config says about RoPE.

    ``inv_freq`` (``(head_dim // 2,)``, float64) are the frequencies used at every position, except for
    ``dynamic``, where they are the unscaled ones and :func:`cos_sin` rescales them from the positions.
    """

    rope_type: str
    theta: float
    dim: int
    inv_freq: np.ndarray
    factor: float = 1.0
    max_position_embeddings: int = 0


def rope_type(config: Any) -> str:
    """The config's RoPE scaling type: ``rope_scaling["rope_type"]`` (or its old name ``"type"``), else default.

    Example:
      >>> from types import SimpleNamespace as C
      >>> rope_type(C(rope_scaling=None)), rope_type(C(rope_scaling={"type": "linear", "factor": 2.0}))
      ('default', 'linear')
    """
    scaling = getattr(config, "rope_scaling", None)
    if not scaling:
        return "default"
    return scaling.get("rope_type", scaling.get("type", "default"))


def head_dim(config: Any) -> int:
    """``config.head_dim`` where set, else ``hidden_size // num_attention_heads`` (as PyTorch's attention does).

    Example:
      >>> from types import SimpleNamespace as C
      >>> head_dim(C(head_dim=32, hidden_size=64, num_attention_heads=4))
      32
      >>> head_dim(C(hidden_size=64, num_attention_heads=4))
      16
    """
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def default_inverse_frequencies(theta: float, dim: int) -> np.ndarray:
    """``1 / theta ** (2i / dim)`` for ``i < dim / 2``: the original RoPE, in float64.

    Example:
      >>> default_inverse_frequencies(10000.0, 4).tolist()
      [1.0, 0.01]
    """
    return 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)


def llama3_inverse_frequencies(
    inv_freq: np.ndarray, factor: float, low_freq_factor: float, high_freq_factor: float, original_max: int
) -> np.ndarray:
    """Llama 3.1's scaling: wavelengths above ``original_max / low_freq_factor`` are divided by ``factor``,
    those below ``original_max / high_freq_factor`` kept, the ones in between interpolated smoothly.

    Example:
      >>> inv = default_inverse_frequencies(500000.0, 8)  # wavelengths 6.3, 168, 4443, 117k
      >>> (llama3_inverse_frequencies(inv, 8.0, 1.0, 4.0, 64) / inv).round(3).tolist()
      [1.0, 0.125, 0.125, 0.125]
    """
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen = original_max / low_freq_factor
    high_freq_wavelen = original_max / high_freq_factor
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (original_max / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return np.where(medium, smoothed, scaled)


def _scaling_value(config: Any, key: str) -> Any:
    try:
        return config.rope_scaling[key]
    except KeyError:
        raise ValueError(f"rope_scaling={config.rope_scaling!r} lacks {key!r}, needed by its type") from None


def rope_from_config(config: Any) -> Rope:
    """The :class:`Rope` of a Llama, Mistral or Gemma config.

    Raises:
      ValueError: a scaling type other than ``default``, ``linear``, ``dynamic``, ``llama3``, a missing scaling
        key, or ``partial_rotary_factor`` below 1 (these families rotate the whole head).

    Example:
      >>> from transformers import LlamaConfig
      >>> config = LlamaConfig(hidden_size=64, num_attention_heads=4, rope_theta=1e6,
      ...                      rope_scaling={"rope_type": "linear", "factor": 4.0})
      >>> rope = rope_from_config(config)
      >>> rope.rope_type, rope.dim, rope.inv_freq[0]
      ('linear', 16, np.float64(0.25))
    """
    kind = rope_type(config)
    if kind not in ROPE_TYPES:
        raise ValueError(
            f"rope_scaling type {kind!r} (rope_scaling={config.rope_scaling!r}) is not supported; "
            f"supported: {', '.join(ROPE_TYPES)}"
        )
    partial = getattr(config, "partial_rotary_factor", 1.0)
    if partial != 1.0:
        raise ValueError(f"partial_rotary_factor={partial} is not supported: these decoders rotate the whole head")
    theta, dim = float(getattr(config, "rope_theta", 10000.0)), head_dim(config)
    inv_freq = default_inverse_frequencies(theta, dim)
    if kind == "linear":
        return Rope(kind, theta, dim, inv_freq / float(_scaling_value(config, "factor")))
    if kind == "llama3":
        factor, low, high, original = (float(_scaling_value(config, key)) for key in _LLAMA3_KEYS)
        return Rope(kind, theta, dim, llama3_inverse_frequencies(inv_freq, factor, low, high, original))
    if kind == "dynamic":
        factor = float(_scaling_value(config, "factor"))
        return Rope(kind, theta, dim, inv_freq, factor, int(config.max_position_embeddings))
    return Rope(kind, theta, dim, inv_freq)


def dynamic_inverse_frequencies(rope: Rope, seq_len: Array | int) -> Array:
    """NTK-aware frequencies for a call whose longest position is ``seq_len - 1`` (float32, traceable).

    Example:
      >>> rope = Rope("dynamic", 10000.0, 4, default_inverse_frequencies(10000.0, 4), 2.0, 8)
      >>> dynamic_inverse_frequencies(rope, 8).tolist(), dynamic_inverse_frequencies(rope, 16).tolist()
      ([1.0, 0.009999999776482582], [1.0, 0.0033333334140479565])
    """
    length = jnp.maximum(jnp.asarray(seq_len, jnp.float32), rope.max_position_embeddings)
    m, d = rope.max_position_embeddings, rope.dim
    base = rope.theta * (rope.factor * length / m - (rope.factor - 1.0)) ** (d / (d - 2))
    return 1.0 / base ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d)


def cos_sin(rope: Rope, position_ids: Array) -> tuple[Array, Array]:
    """``cos`` and ``sin`` of the rotation angles at ``position_ids`` (``(..., seq)``): each ``(..., seq, dim)``,
    float32, with the angles of the first half repeated in the second (the "rotate half" layout).

    Example:
      >>> rope = Rope("default", 10000.0, 4, default_inverse_frequencies(10000.0, 4))
      >>> cos, sin = cos_sin(rope, jnp.array([[0, 1]]))
      >>> cos.shape, np.asarray(sin[0, 1], np.float64).round(4).tolist()
      ((1, 2, 4), [0.8415, 0.01, 0.8415, 0.01])
    """
    if rope.rope_type == "dynamic":
        inv_freq = dynamic_inverse_frequencies(rope, jnp.max(position_ids) + 1)
    else:
        inv_freq = jnp.asarray(rope.inv_freq, jnp.float32)
    angles = jnp.asarray(position_ids, jnp.float32)[..., None] * inv_freq
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: Array, cos: Array, sin: Array) -> Array:
    """Rotates ``x`` (``(batch, seq, heads, dim)``) by the angles of :func:`cos_sin` (``(batch, seq, dim)``).

    Pairs ``(x_i, x_{i + dim/2})`` turn by angle ``i``; the result is float32.

    Example:
      >>> x = jnp.array([1.0, 0.0, 0.0, 0.0]).reshape(1, 1, 1, 4)
      >>> cos, sin = jnp.cos(jnp.full((1, 1, 4), 0.5)), jnp.sin(jnp.full((1, 1, 4), 0.5))
      >>> np.asarray(apply_rope(x, cos, sin), np.float64).round(4).ravel().tolist()
      [0.8776, 0.0, 0.4794, 0.0]
    """
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[..., None, :] + rotated * sin[..., None, :]
