"""Decoder LLMs whose Flax numerics match transformers' PyTorch models: Llama, Mistral and Gemma.

- :mod:`~pst_jax.models.rope`: rotary embeddings from a config (``rope_theta``, ``head_dim``, ``rope_scaling``);
- :mod:`~pst_jax.models.attention`: grouped-query self-attention with that RoPE and a causal / sliding-window mask;
- :mod:`~pst_jax.models.decoders`: the causal-LM classes (transformers' Flax classes with that attention),
  :func:`~pst_jax.models.decoders.load_decoder` and :func:`~pst_jax.models.decoders.decoder_from_config`.
"""

from pst_jax.models.decoders import DECODER_CLASSES, check_config, decoder_class, decoder_from_config, load_decoder

__all__ = ["DECODER_CLASSES", "check_config", "decoder_class", "decoder_from_config", "load_decoder"]
