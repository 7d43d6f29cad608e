"""Tiny Hugging Face Flax models built from configs (no network) and small learnable tasks."""

import jax.numpy as jnp
import numpy as np
from transformers import (
    BertConfig,
    FlaxBertForSequenceClassification,
    FlaxGPT2LMHeadModel,
    FlaxRobertaForSequenceClassification,
    GPT2Config,
    RobertaConfig,
)

VOCAB = 64
_ENCODER = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=48,
    max_position_embeddings=40,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)


def bert(num_labels: int = 2, seed: int = 0, dtype=jnp.float32):
    """``dtype``: the compute dtype (the params are float32 whatever it is)."""
    return FlaxBertForSequenceClassification(BertConfig(**_ENCODER, num_labels=num_labels), seed=seed, dtype=dtype)


def roberta(num_labels: int = 2, seed: int = 0):
    config = RobertaConfig(**_ENCODER, num_labels=num_labels, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    return FlaxRobertaForSequenceClassification(config, seed=seed)


def gpt2(seed: int = 0):
    # A larger init than GPT-2's 0.02: the tied, frozen 32-wide embedding must be able to express confident logits.
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=32, initializer_range=0.2)
    return FlaxGPT2LMHeadModel(config, seed=seed)


#: Tiny decoder configs: 2 layers, 64 wide, 4 query heads sharing 2 key-value heads (head_dim 16). The init is
#: ten times the families' 0.02 so that attention is sharp enough for a wrong rotation to change the logits.
_DECODER = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    initializer_range=0.2,
)


def decoder_config(model_type: str, **overrides):
    """A tiny ``llama``, ``mistral`` or ``gemma`` config (Gemma: ``head_dim`` 16, its default is 256)."""
    from transformers import GemmaConfig, LlamaConfig, MistralConfig

    if model_type == "gemma":
        base = dict(_DECODER, head_dim=16, hidden_activation="gelu_pytorch_tanh")
        return GemmaConfig(**{**base, **overrides})
    config_class = {"llama": LlamaConfig, "mistral": MistralConfig}[model_type]
    return config_class(**{**_DECODER, **overrides})


def decoder(model_type: str, seed: int = 0, **overrides):
    """A tiny decoder with the fixed numerics (:func:`pst_jax.models.decoder_from_config`)."""
    from pst_jax.models import decoder_from_config

    return decoder_from_config(decoder_config(model_type, **overrides), seed=seed)


def classification_batch(rng: np.random.Generator, batch: int = 16, length: int = 8) -> dict[str, np.ndarray]:
    """Random tokens; the first one is 5 or 6 and gives the label."""
    ids = rng.integers(7, VOCAB, (batch, length)).astype(np.int32)
    labels = rng.integers(0, 2, batch).astype(np.int32)
    ids[:, 0] = 5 + labels
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": labels}


def lm_batch(rng: np.random.Generator, batch: int = 8, length: int = 16) -> dict[str, np.ndarray]:
    """Tokens 8..15 counting up cyclically from a random start: the next token is predictable."""
    start = rng.integers(0, 8, (batch, 1))
    ids = (8 + (start + np.arange(length)[None, :]) % 8).astype(np.int32)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def save_bert_folder(path, texts, num_layers: int = 2) -> str:
    """Saves a tiny BERT (no head) and a word-piece tokenizer whose vocabulary covers ``texts``.

    Loads like a pretrained checkpoint: ``FlaxAutoModelForSequenceClassification.from_pretrained(path)``.
    """
    import re

    from transformers import BertTokenizerFast, FlaxBertModel

    words = sorted({w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True).save_pretrained(path)
    config = BertConfig(**{**_ENCODER, "vocab_size": len(vocab), "num_hidden_layers": num_layers})
    FlaxBertModel(config, seed=0).save_pretrained(path)
    return str(path)
