"""Grouped-query self-attention for Llama, Mistral and Gemma, with the numerics of transformers' PyTorch models.

It replaces the attention of transformers' Flax classes, which (4.57) build RoPE with base 10000 whatever
``rope_theta`` and ``rope_scaling`` say, ignore ``head_dim`` (Llama, Mistral), let a token attend only to
itself when Mistral's ``sliding_window`` is ``None``, keep one key too many in Mistral's window, and build a
``max_position_embeddings ** 2`` causal mask as a constant. Here:

* ``q, k, v, o`` are ``nn.Dense`` layers named as in the Flax classes (``q_proj`` ... ``o_proj``), so
  checkpoints load and save interchangeably; ``q`` is ``(hidden, heads * head_dim)``, ``k``, ``v``
  ``(hidden, kv_heads * head_dim)``, ``o`` ``(heads * head_dim, hidden)``, with biases where
  ``config.attention_bias``;
* RoPE comes from :mod:`pst_jax.models.rope`;
* the mask is built from the call's lengths: query ``i`` (at cache index ``cache_index + i``) sees key ``j``
  when ``j <= i`` and, with a sliding window ``w``, ``j > i - w`` (``w`` keys, itself included, as
  transformers' ``sliding_window_overlay``), and the key is not padding.

The KV cache (``init_cache``, ``past_key_values``) works as in the Flax classes: keys and values are cached
per key-value head, ``(batch, max_length, kv_heads, head_dim)``, before the grouped heads are repeated.
"""

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import combine_masks
from flax.linen.attention import dot_product_attention_weights
from transformers.models.llama.modeling_flax_llama import FlaxLlamaAttention

from pst_jax.core.types import Array
from pst_jax.models import rope


def causal_mask(
    query_length: int, key_length: int, offset: Array | int = 0, sliding_window: int | None = None
) -> Array:
    """``(1, 1, query_length, key_length)`` bool: query ``i`` sits at index ``offset + i`` among the keys.

    Example:
      >>> causal_mask(4, 4, sliding_window=2)[0, 0].astype(int).tolist()
      [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    """
    query = offset + jnp.arange(query_length)[:, None]
    key = jnp.arange(key_length)[None, :]
    allowed = key <= query
    if sliding_window is not None:
        allowed &= key > query - sliding_window
    return allowed[None, None]


class DecoderAttention(FlaxLlamaAttention):
    """Self-attention of a Llama-family decoder layer (see the module docstring).

    ``sliding_window``: Mistral's ``config.sliding_window`` (``None``: full causal attention); the Llama and
    Gemma families have none. The cache helper ``_concatenate_to_cache`` is the Flax classes' own.

    Example:
      >>> from transformers import LlamaConfig
      >>> config = LlamaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=16)
      >>> attn = DecoderAttention(config)
      >>> x, pos = jnp.ones((1, 5, 32)), jnp.arange(5)[None]
      >>> params = attn.init(jax.random.key(0), x, jnp.ones((1, 5)), pos)["params"]
      >>> params["q_proj"]["kernel"].shape, params["k_proj"]["kernel"].shape, params["o_proj"]["kernel"].shape
      ((32, 64), (32, 32), (64, 32))
    """

    sliding_window: int | None = None

    def setup(self):
        config = self.config
        self.num_heads = config.num_attention_heads
        self.num_key_value_heads = config.num_key_value_heads
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        self.head_dim = rope.head_dim(config)
        self.attention_softmax_in_fp32 = jnp.dtype(self.dtype) != jnp.float32
        dense = partial(
            nn.Dense,
            use_bias=getattr(config, "attention_bias", False),
            dtype=self.dtype,
            kernel_init=jax.nn.initializers.normal(config.initializer_range),
        )
        self.q_proj = dense(self.num_heads * self.head_dim)
        self.k_proj = dense(self.num_key_value_heads * self.head_dim)
        self.v_proj = dense(self.num_key_value_heads * self.head_dim)
        self.o_proj = dense(config.hidden_size)

    def _merge_heads(self, hidden_states: Array) -> Array:
        return hidden_states.reshape(hidden_states.shape[:2] + (self.num_heads * self.head_dim,))

    def __call__(
        self,
        hidden_states: Array,
        attention_mask: Array,
        position_ids: Array,
        deterministic: bool = True,
        init_cache: bool = False,
        output_attentions: bool = False,
    ):
        query = self._split_heads(self.q_proj(hidden_states), self.num_heads)
        key = self._split_heads(self.k_proj(hidden_states), self.num_key_value_heads)
        value = self._split_heads(self.v_proj(hidden_states), self.num_key_value_heads)
        cos, sin = rope.cos_sin(rope.rope_from_config(self.config), position_ids)
        query = rope.apply_rope(query, cos, sin).astype(self.dtype)
        key = rope.apply_rope(key, cos, sin).astype(self.dtype)

        if self.has_variable("cache", "cached_key"):
            offset = self.variables["cache"]["cache_index"]
            key_length = self.variables["cache"]["cached_key"].shape[1]
        else:
            offset, key_length = 0, key.shape[1]
        batch = hidden_states.shape[0]
        mask = causal_mask(query.shape[1], key_length, offset, self.sliding_window)
        mask = jnp.broadcast_to(mask, (batch,) + mask.shape[1:])
        mask = combine_masks(jnp.broadcast_to(attention_mask[:, None, None, :], mask.shape), mask)

        dropout_rng = None
        if not deterministic and self.config.attention_dropout > 0.0:
            dropout_rng = self.make_rng("dropout")
        if self.has_variable("cache", "cached_key") or init_cache:
            key, value, mask = self._concatenate_to_cache(key, value, query, mask)
        key = jnp.repeat(key, self.num_key_value_groups, axis=2)
        value = jnp.repeat(value, self.num_key_value_groups, axis=2)

        bias = jnp.where(mask > 0, 0.0, jnp.finfo(self.dtype).min).astype(self.dtype)
        weights = dot_product_attention_weights(
            query,
            key,
            bias=bias,
            dropout_rng=dropout_rng,
            dropout_rate=self.config.attention_dropout,
            deterministic=deterministic,
            dtype=jnp.float32 if self.attention_softmax_in_fp32 else self.dtype,
        ).astype(self.dtype)
        output = self.o_proj(self._merge_heads(jnp.einsum("...hqk,...khd->...qhd", weights, value)))
        return (output, weights) if output_attentions else (output,)
