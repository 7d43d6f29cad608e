"""The architectures the benchmarks and the memory plan know by name, from their published configs (no download).

Encoders and GPT-2 are Hugging Face's Flax classes; Llama, Mistral and Gemma are :mod:`pst_jax.models`' decoders
(correct RoPE, ``head_dim`` and sliding window). Every entry builds as shapes only (:func:`abstract_params`), so a
7B model is counted and planned on a laptop.

Example:
    >>> config = model_config("llama-3-8b")
    >>> config.model_type, config.num_key_value_heads, config.rope_theta
    ('llama', 8, 500000.0)
"""

import math
from typing import Any

import jax

# name: (family, config overrides). BertConfig / GPT2Config defaults are BERT-base / GPT-2 small; the decoders'
# values are those of the checkpoints' config.json (meta-llama/Llama-2-7b-hf, meta-llama/Meta-Llama-3-8B,
# mistralai/Mistral-7B-v0.3, google/gemma-7b).
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "bert-base": ("bert", {}),
    "bert-large": ("bert", {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                            "intermediate_size": 4096}),
    "gpt2": ("gpt2", {}),
    "gpt2-medium": ("gpt2", {"n_embd": 1024, "n_layer": 24, "n_head": 16}),
    "gpt2-large": ("gpt2", {"n_embd": 1280, "n_layer": 36, "n_head": 20}),
    "gpt2-xl": ("gpt2", {"n_embd": 1600, "n_layer": 48, "n_head": 25}),
    "llama-2-7b": ("llama", {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
                             "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                             "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0}),
    "llama-3-8b": ("llama", {"vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
                             "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                             "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0}),
    "mistral-7b": ("mistral", {"vocab_size": 32768, "hidden_size": 4096, "intermediate_size": 14336,
                               "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                               "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "rope_theta": 1e6,
                               "sliding_window": None}),
    "gemma-7b": ("gemma", {"vocab_size": 256000, "hidden_size": 3072, "intermediate_size": 24576,
                           "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 16,
                           "head_dim": 256, "max_position_embeddings": 8192, "rms_norm_eps": 1e-6,
                           "hidden_activation": "gelu_pytorch_tanh"}),
    "tiny-bert": ("bert", {"vocab_size": 128, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                           "intermediate_size": 48, "max_position_embeddings": 64}),
    "tiny-gpt2": ("gpt2", {"vocab_size": 128, "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64}),
    "tiny-llama": ("llama", {"vocab_size": 128, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
                             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}),
}  # fmt: skip

#: Families whose models are causal language models (the others classify).
CAUSAL_FAMILIES = ("gpt2", "llama", "mistral", "gemma")


def model_config(model_name: str) -> Any:
    """The Hugging Face config of a :data:`MODELS` entry, or of a model folder (no weights)."""
    import transformers

    if model_name not in MODELS:  # a folder of pretrained weights
        return transformers.AutoConfig.from_pretrained(model_name, num_labels=2)
    family, overrides = MODELS[model_name]
    if family == "bert":
        return transformers.BertConfig(**overrides, num_labels=2)
    classes = {"gpt2": "GPT2Config", "llama": "LlamaConfig", "mistral": "MistralConfig", "gemma": "GemmaConfig"}
    return getattr(transformers, classes[family])(**overrides)


def positions_and_width(config: Any) -> tuple[int, int]:
    """``(positions, width)``: the longest row the model takes and its hidden size."""
    if config.model_type == "gpt2":
        return config.n_positions, config.n_embd
    reserved = config.pad_token_id + 1 if config.model_type == "roberta" else 0
    return config.max_position_embeddings - reserved, config.hidden_size


def model_class(config: Any) -> type:
    """The Flax class that builds ``config``: a causal LM for the decoders, a sequence classifier otherwise."""
    import transformers

    from pst_jax.models.decoders import MODEL_TYPES, decoder_class

    if config.model_type in MODEL_TYPES:
        return decoder_class(config.model_type)
    classes = {"gpt2": "FlaxGPT2LMHeadModel", "bert": "FlaxBertForSequenceClassification"}
    return getattr(transformers, classes[config.model_type])


def unbuilt_model(config: Any, dtype: Any = None, remat: bool = False) -> Any:
    """The model of ``config`` with no weights allocated (``_do_init=False``), computing in ``dtype`` (default
    float32); ``remat``: each decoder layer recomputed in the backward pass (Llama, Mistral, Gemma only)."""
    kwargs = ({} if dtype is None else {"dtype": dtype}) | ({"remat": True} if remat else {})
    return model_class(config)(config, _do_init=False, **kwargs)


def abstract_params(model: Any, seq_len: int = 1) -> Any:
    """The parameter tree of an :func:`unbuilt_model` as ``jax.ShapeDtypeStruct`` leaves."""
    return jax.eval_shape(lambda key: model.init_weights(key, (1, seq_len)), jax.random.key(0))


def float32_bytes(model_name: str) -> int:
    """Bytes of the named model's parameters in float32 (from shapes)."""
    params = abstract_params(unbuilt_model(model_config(model_name)))
    return 4 * sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
