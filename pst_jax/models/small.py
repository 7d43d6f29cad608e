"""Small random decoders saved with a tokenizer: Llama, Mistral or Gemma models for CPU demos and smoke tests.

``python -m experiments.tiny_decoder`` is the command-line face of :func:`save_random_decoder`. The folder
loads like a pretrained checkpoint (``--model FOLDER`` in ``experiments.nlg``, transformers' stock Flax
class, :func:`~pst_jax.models.decoders.load_decoder`); its weights are random.
"""

from pathlib import Path
from typing import Any

from transformers import GemmaConfig, LlamaConfig, MistralConfig, PretrainedConfig

from pst_jax.models.decoders import MODEL_TYPES, decoder_from_config

_CONFIG_CLASSES = {"llama": LlamaConfig, "mistral": MistralConfig, "gemma": GemmaConfig}


def small_config(
    model_type: str,
    vocab_size: int,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    max_position_embeddings: int = 512,
    sliding_window: int | None = None,
    initializer_range: float = 0.2,
    special_tokens: dict[str, int | None] | None = None,
) -> PretrainedConfig:
    """A ``model_type`` config of the given sizes: ``head_dim = hidden_size // num_heads`` (Gemma's default, 256,
    would be far wider than a small model), MLP ``3 * hidden_size`` wide, the family's defaults otherwise.

    Args:
      model_type: ``llama``, ``mistral`` or ``gemma``.
      vocab_size: the tokenizer's size (``len(tokenizer)``).
      hidden_size, num_layers, num_heads, num_kv_heads, max_position_embeddings: the sizes.
      sliding_window: Mistral's attention window (``None``: full causal attention); other families take none.
      initializer_range: std of the random weights (the families use 0.02; larger lets a narrow model's frozen
        random head give confident logits).
      special_tokens: ``bos_token_id``, ``eos_token_id``, ``pad_token_id`` (the tokenizer's), replacing the
        family's defaults.

    Example:
      >>> config = small_config("gemma", 100, hidden_size=32, special_tokens={"eos_token_id": 99})
      >>> config.head_dim, config.intermediate_size, config.eos_token_id, config.num_key_value_heads
      (8, 96, 99, 2)
      >>> small_config("llama", 100, sliding_window=4)
      Traceback (most recent call last):
      ValueError: sliding_window is Mistral's; a llama model has none
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is not a supported decoder; supported: {MODEL_TYPES}")
    if sliding_window is not None and model_type != "mistral":
        raise ValueError(f"sliding_window is Mistral's; a {model_type} model has none")
    sizes: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=3 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        initializer_range=initializer_range,
        **(special_tokens or {}),
    )
    if model_type == "mistral":
        sizes["sliding_window"] = sliding_window
    if model_type == "gemma":
        sizes["hidden_activation"] = "gelu_pytorch_tanh"  # Gemma's; unset, transformers warns and uses it
    return _CONFIG_CLASSES[model_type](**sizes)


def save_random_decoder(config: PretrainedConfig, tokenizer: Any, folder: str | Path, seed: int = 0) -> Path:
    """Saves a decoder of ``config`` with random weights (``seed``) and ``tokenizer`` into ``folder``.

    Returns:
      The folder.

    Example::

        tokenizer = AutoTokenizer.from_pretrained("../shared/data/gpt2_tokenizer")
        ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
        save_random_decoder(small_config("llama", len(tokenizer), special_tokens=ids), tokenizer, "runs/tiny-llama")
    """
    folder = Path(folder)
    decoder_from_config(config, seed=seed).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def special_token_ids(tokenizer: Any) -> dict[str, int | None]:
    """The tokenizer's ``bos_token_id``, ``eos_token_id`` and ``pad_token_id``, for :func:`small_config`.

    Example:
      >>> from types import SimpleNamespace as T
      >>> special_token_ids(T(bos_token_id=1, eos_token_id=2, pad_token_id=None))
      {'bos_token_id': 1, 'eos_token_id': 2, 'pad_token_id': None}
    """
    return {name: getattr(tokenizer, name) for name in ("bos_token_id", "eos_token_id", "pad_token_id")}
