"""Llama, Mistral and Gemma causal LMs: transformers' Flax classes with the attention numerics fixed.

transformers 4.57's ``FlaxLlamaForCausalLM``, ``FlaxMistralForCausalLM`` and ``FlaxGemmaForCausalLM``
compute the wrong function for many current configs (RoPE theta and scaling ignored, ``head_dim`` ignored,
Mistral's window wrong; see :mod:`pst_jax.models.attention`). The classes here are small subclasses of those:
each level's ``setup`` is rebuilt so that the decoder layers use
:class:`~pst_jax.models.attention.DecoderAttention` (and Llama's MLP honours ``mlp_bias``); every
``__call__``, the norms, the embedding, the LM head (Gemma's tied to the embedding), ``init_cache``,
``save_pretrained`` and ``from_pretrained`` are transformers' own. Parameter names and shapes are those of
the Flax classes (for every config the Flax classes get right), so a checkpoint saved by one loads in the
other; :func:`check_config` refuses, with a one-line :class:`ValueError`, what neither computes correctly.

The model classes keep transformers' names (``FlaxLlamaForCausalLM`` ...) so that ``save_pretrained``
writes ``"architectures": ["LlamaForCausalLM"]``, as the stock class does.

No other family among transformers 4.57's Flax causal LMs shares this design (RMSNorm, rotate-half RoPE,
grouped-query attention, gated MLP): GPT-2, GPT-Neo, GPT-J, OPT, BLOOM and XGLM use LayerNorm and learned or
sinusoidal positions, ALiBi (BLOOM) or GPT-J's partial, interleaved rotary embedding; the rest of that
mapping (BART, BERT, RoBERTa, ...) are encoders or encoder-decoders with a causal-LM head.
"""

from functools import partial
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from transformers import AutoConfig, PretrainedConfig
from transformers.modeling_flax_utils import FlaxPreTrainedModel
from transformers.models.gemma import modeling_flax_gemma as gemma
from transformers.models.llama import modeling_flax_llama as llama
from transformers.models.mistral import modeling_flax_mistral as mistral

from pst_jax.models import rope
from pst_jax.models.attention import DecoderAttention


class LlamaMLP(llama.FlaxLlamaMLP):
    """Llama's gated MLP with biases where ``config.mlp_bias`` (the Flax class never has them)."""

    def setup(self):
        config = self.config
        dense = partial(
            nn.Dense,
            use_bias=getattr(config, "mlp_bias", False),
            dtype=self.dtype,
            kernel_init=jax.nn.initializers.normal(config.initializer_range),
        )
        self.act = llama.ACT2FN[config.hidden_act]
        self.gate_proj = dense(config.intermediate_size)
        self.down_proj = dense(config.hidden_size)
        self.up_proj = dense(config.intermediate_size)


class _Family(NamedTuple):
    """The transformers Flax classes of one family whose ``setup`` is rebuilt, and its norm and MLP."""

    model: type[FlaxPreTrainedModel]
    lm_module: type[nn.Module]
    body: type[nn.Module]
    collection: type[nn.Module]
    layer: type[nn.Module]
    norm: type[nn.Module]
    mlp: type[nn.Module]
    sliding_window: bool


_HF = {
    "llama": _Family(
        llama.FlaxLlamaForCausalLM,
        llama.FlaxLlamaForCausalLMModule,
        llama.FlaxLlamaModule,
        llama.FlaxLlamaLayerCollection,
        llama.FlaxLlamaDecoderLayer,
        llama.FlaxLlamaRMSNorm,
        LlamaMLP,
        False,
    ),
    "mistral": _Family(
        mistral.FlaxMistralForCausalLM,
        mistral.FlaxMistralForCausalLMModule,
        mistral.FlaxMistralModule,
        mistral.FlaxMistralLayerCollection,
        mistral.FlaxMistralDecoderLayer,
        mistral.FlaxMistralRMSNorm,
        mistral.FlaxMistralMLP,
        True,
    ),
    "gemma": _Family(
        gemma.FlaxGemmaForCausalLM,
        gemma.FlaxGemmaForCausalLMModule,
        gemma.FlaxGemmaModule,
        gemma.FlaxGemmaLayerCollection,
        gemma.FlaxGemmaDecoderLayer,
        gemma.FlaxGemmaRMSNorm,
        gemma.FlaxGemmaMLP,
        False,
    ),
}

MODEL_TYPES = tuple(_HF)


def _subclass(base: type, name: str, **attributes: Any) -> type:
    return type(name, (base,), {"__module__": __name__, "__qualname__": name, **attributes})


def _collection_call(
    self,
    hidden_states,
    attention_mask=None,
    position_ids=None,
    deterministic: bool = True,
    init_cache: bool = False,
    output_attentions: bool = False,
    output_hidden_states: bool = False,
    return_dict: bool = False,
):
    """transformers' layer loop, each layer called with positional arguments (what ``nn.remat`` needs)."""
    all_hidden_states = () if output_hidden_states else None
    all_attentions = () if output_attentions else None
    for block in self.blocks:
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        outputs = block(hidden_states, attention_mask, position_ids, deterministic, init_cache, output_attentions)
        hidden_states = outputs[0]
        if output_attentions:
            all_attentions += (outputs[1],)
    return hidden_states, all_hidden_states, all_attentions


def _build(family: _Family) -> type[FlaxPreTrainedModel]:
    """The fixed causal-LM class of a family: every level's ``setup`` rebuilt with the same names."""

    def layer_setup(self):
        window = self.config.sliding_window if family.sliding_window else None
        self.input_layernorm = family.norm(self.config, dtype=self.dtype)
        self.self_attn = DecoderAttention(self.config, dtype=self.dtype, sliding_window=window)
        self.post_attention_layernorm = family.norm(self.config, dtype=self.dtype)
        self.mlp = family.mlp(self.config, dtype=self.dtype)

    layer = _subclass(family.layer, "Pst" + family.layer.__name__[4:], setup=layer_setup)

    # deterministic, init_cache and output_attentions are Python flags: arguments 4-6 of the call (self is 0)
    remat_layer = nn.remat(layer, static_argnums=(4, 5, 6))

    def collection_setup(self):
        block = remat_layer if self.remat else layer
        self.blocks = [block(self.config, dtype=self.dtype, name=str(i)) for i in range(self.config.num_hidden_layers)]

    collection = _subclass(
        family.collection,
        "Pst" + family.collection.__name__[4:],
        setup=collection_setup,
        __call__=_collection_call,
        __annotations__={"remat": bool},
        remat=False,
    )

    def body_setup(self):
        config = self.config
        self.hidden_size = config.hidden_size
        init = jax.nn.initializers.normal(stddev=config.initializer_range)
        self.embed_tokens = nn.Embed(config.vocab_size, config.hidden_size, embedding_init=init, dtype=self.dtype)
        self.layers = collection(config, dtype=self.dtype, remat=self.remat)
        self.norm = family.norm(config, dtype=self.dtype)

    body = _subclass(
        family.body, "Pst" + family.body.__name__[4:], setup=body_setup, __annotations__={"remat": bool}, remat=False
    )

    def lm_setup(self):
        init = jax.nn.initializers.normal(stddev=self.config.initializer_range)
        self.model = body(self.config, dtype=self.dtype, remat=self.remat)
        self.lm_head = nn.Dense(self.config.vocab_size, use_bias=False, dtype=self.dtype, kernel_init=init)

    lm_module = _subclass(
        family.lm_module,
        "Pst" + family.lm_module.__name__[4:],
        setup=lm_setup,
        __annotations__={"remat": bool},
        remat=False,
    )
    doc = f"``{family.model.__name__}`` with :class:`~pst_jax.models.attention.DecoderAttention` (see the module)."
    return _subclass(family.model, family.model.__name__, module_class=lm_module, __doc__=doc)


#: The fixed causal-LM class of each model type.
DECODER_CLASSES: dict[str, type[FlaxPreTrainedModel]] = {name: _build(family) for name, family in _HF.items()}


def check_config(config: PretrainedConfig) -> None:
    """Raises a one-line :class:`ValueError` for a config these decoders cannot compute correctly.

    Example:
      >>> from transformers import LlamaConfig
      >>> check_config(LlamaConfig(rope_scaling={"rope_type": "yarn", "factor": 4.0}))
      Traceback (most recent call last):
      ValueError: rope_scaling type 'yarn' (rope_scaling={'rope_type': 'yarn', 'factor': 4.0}) is not supported; ...
    """
    if config.model_type not in _HF:
        raise ValueError(f"model_type {config.model_type!r} is not a supported decoder; supported: {MODEL_TYPES}")
    rope.rope_from_config(config)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    if heads % kv_heads:
        raise ValueError(f"num_key_value_heads={kv_heads} does not divide num_attention_heads={heads}")
    window = getattr(config, "sliding_window", None) if _HF[config.model_type].sliding_window else None
    if window is not None and (not isinstance(window, int) or window < 1):
        raise ValueError(f"sliding_window={window!r} must be a positive integer or None")


def decoder_class(model_type: str) -> type[FlaxPreTrainedModel]:
    """The fixed Flax causal-LM class for ``model_type`` (``llama``, ``mistral``, ``gemma``).

    Example:
      >>> decoder_class("mistral").__name__, decoder_class("mistral").__module__
      ('FlaxMistralForCausalLM', 'pst_jax.models.decoders')
    """
    try:
        return DECODER_CLASSES[model_type]
    except KeyError:
        raise ValueError(f"model_type {model_type!r} is not a supported decoder; supported: {MODEL_TYPES}") from None


def decoder_from_config(
    config: PretrainedConfig, *, dtype: jnp.dtype = jnp.float32, seed: int = 0, **kwargs: Any
) -> FlaxPreTrainedModel:
    """A randomly initialised decoder for ``config``; ``dtype`` is the compute dtype (params are float32).

    ``kwargs`` go to the model class (e.g. ``input_shape``, ``_do_init=False``).

    Example:
      >>> from transformers import LlamaConfig
      >>> config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
      ...                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, rope_theta=5e5)
      >>> model = decoder_from_config(config)
      >>> model.params["model"]["layers"]["0"]["self_attn"]["q_proj"]["kernel"].shape
      (32, 64)
      >>> model(jnp.ones((2, 5), jnp.int32)).logits.shape
      (2, 5, 64)
    """
    check_config(config)
    return decoder_class(config.model_type)(config, dtype=dtype, seed=seed, **kwargs)


def load_decoder(
    name_or_path_or_config: str | PretrainedConfig,
    *,
    dtype: jnp.dtype = jnp.float32,
    seed: int = 0,
    remat: bool = False,
    **kwargs: Any,
) -> FlaxPreTrainedModel:
    """A decoder from a config (random weights, ``seed``), or a checkpoint folder or hub id (its weights).

    ``remat`` recomputes each layer in the backward pass (``nn.remat``: the same values and gradients; its
    activations are recomputed, not kept). ``kwargs`` go to
    ``from_pretrained`` (e.g. ``from_pt=True``, ``local_files_only=True``). A checkpoint saved by the model
    loads with transformers' stock class too, and the other way round.

    Example:
      >>> import tempfile
      >>> from transformers import GemmaConfig
      >>> config = GemmaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
      ...                      num_attention_heads=2, num_key_value_heads=1, head_dim=16)
      >>> folder = tempfile.mkdtemp()
      >>> load_decoder(config, seed=1).save_pretrained(folder)
      >>> type(load_decoder(folder)).__name__, sorted(load_decoder(folder).params)
      ('FlaxGemmaForCausalLM', ['model'])
    """
    # remat is a module argument, not a config entry: exported checkpoints do not carry it
    if isinstance(name_or_path_or_config, PretrainedConfig):
        return decoder_from_config(name_or_path_or_config, dtype=dtype, seed=seed, remat=remat)
    from pst_jax.models.convert import needs_conversion

    if needs_conversion(name_or_path_or_config):
        raise ValueError(
            f"{name_or_path_or_config} holds sharded PyTorch-format safetensors, which Flax does not read; convert "
            f"them once: python -m experiments.convert_decoder --model {name_or_path_or_config} --output_dir FOLDER"
        )
    config = AutoConfig.from_pretrained(name_or_path_or_config, **kwargs)
    check_config(config)
    load = decoder_class(config.model_type).from_pretrained
    return load(name_or_path_or_config, config=config, dtype=dtype, seed=seed, remat=remat, **kwargs)
