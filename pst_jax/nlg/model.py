"""The model of a data-to-text run: GPT-2 or a Llama-family decoder, its config, tokenizer, weights and plan.

``--model`` (a folder or hub id) is read in three steps, cheapest first, each failing with a one-line
:class:`~pst_jax.training.errors.InputError`:

1. :func:`read_model_config`: ``config.json`` only. Its ``model_type`` must be ``gpt2`` or one of
   :data:`pst_jax.models.decoders.MODEL_TYPES` (``llama``, ``mistral``, ``gemma``); a decoder config that
   :func:`pst_jax.models.check_config` refuses (``yarn`` RoPE, ...) stops here, before any weights load.
2. :func:`load_tokenizer`: the model's own tokenizer; it needs an eos token (it separates the prompt from the
   target and ends both) and no more tokens than the model's vocabulary.
3. :func:`load_model`: the weights (GPT-2 with ``FlaxGPT2LMHeadModel``, a decoder with
   :func:`pst_jax.models.load_decoder`, whose RoPE, ``head_dim`` and sliding window follow the config) and
   the plan of its rule set (:func:`pst_jax.core.rules.rules_for`).

Example::

    config = read_model_config("runs/tiny-llama")  # LlamaConfig; positions(config) == max_position_embeddings
    tokenizer = load_tokenizer("runs/tiny-llama", config)
    model, plan = load_model(cfg, config.model_type)  # cfg: the run's NLGConfig
"""

from typing import Any

from pst_jax.core.rules import Plan, make_plan, rules_for
from pst_jax.models.decoders import MODEL_TYPES, check_config, load_decoder
from pst_jax.nlg.config import NLGConfig
from pst_jax.training.errors import InputError, one_line
from pst_jax.training.method_config import check_ranks, compute_dtype

#: The ``model_type`` values ``--model`` may have.
ACCEPTED_MODEL_TYPES = ("gpt2", *MODEL_TYPES)


def read_model_config(model: str, remat: bool = False) -> Any:
    """The Hugging Face config of ``model``, checked to be a model the NLG tasks take (``remat``: with
    ``--remat``, which only the decoders have); loads no weights.

    Raises:
      InputError: the config does not load, its ``model_type`` is not in :data:`ACCEPTED_MODEL_TYPES`, it is a
        decoder config whose numerics :func:`pst_jax.models.check_config` refuses, or ``remat`` on GPT-2.
    """
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as error:
        raise InputError(f"the config of model {model} does not load: {one_line(error)}") from None
    if config.model_type not in ACCEPTED_MODEL_TYPES:
        raise InputError(
            f"model {model} is a {config.model_type!r} model; the NLG tasks here take GPT-2 (gpt2) or a decoder "
            f"of type {', '.join(MODEL_TYPES)}"
        )
    if remat and config.model_type not in MODEL_TYPES:
        raise InputError(f"--remat takes a decoder of type {', '.join(MODEL_TYPES)}; model {model} is GPT-2")
    if config.model_type in MODEL_TYPES:
        try:
            check_config(config)
        except ValueError as error:
            raise InputError(f"model {model} cannot be computed correctly here: {one_line(error)}") from None
    return config


def positions(config: Any) -> int:
    """The longest sequence the model takes: GPT-2's ``n_positions``, a decoder's ``max_position_embeddings``.

    Example:
      >>> from types import SimpleNamespace as C
      >>> llama = C(model_type="llama", max_position_embeddings=4096)
      >>> positions(C(model_type="gpt2", n_positions=1024)), positions(llama)
      (1024, 4096)
    """
    return config.n_positions if config.model_type == "gpt2" else config.max_position_embeddings


def load_tokenizer(model: str, config: Any) -> Any:
    """``model``'s own tokenizer, checked against its ``config``.

    Raises:
      InputError: it does not load, has no eos token, or has more tokens than ``config.vocab_size`` (their ids
        would index past the embedding).
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as error:
        raise InputError(f"the tokenizer of model {model} does not load: {one_line(error)}") from None
    if tokenizer.eos_token_id is None:
        raise InputError(
            f"the tokenizer of model {model} has no eos token; the rows need one to end the source and the target"
        )
    if len(tokenizer) > config.vocab_size:
        raise InputError(
            f"the tokenizer of model {model} has {len(tokenizer)} tokens, more than the model's vocabulary of "
            f"{config.vocab_size}; save the model with its own tokenizer"
        )
    return tokenizer


def _load_weights(cfg: NLGConfig, model_type: str) -> Any:
    from transformers import FlaxGPT2LMHeadModel

    if model_type == "gpt2":
        return FlaxGPT2LMHeadModel.from_pretrained(cfg.model, seed=cfg.seed, dtype=compute_dtype(cfg))
    return load_decoder(cfg.model, dtype=compute_dtype(cfg), seed=cfg.seed, remat=cfg.remat)


def load_model(cfg: NLGConfig, model_type: str) -> tuple[Any, Plan]:
    """``cfg.model``'s weights (compute dtype ``--dtype``) and its plan, checked against the method's ranks.

    Args:
      cfg: the run's settings (``model``, ``seed`` for any weights the checkpoint lacks, the method's ranks).
      model_type: the model's ``config.model_type`` (from :func:`read_model_config`).

    Raises:
      InputError: the weights do not load, or a rank exceeds a sparsified matrix's smaller side.
    """
    try:
        loaded = _load_weights(cfg, model_type)
    except (OSError, ValueError) as error:  # a missing, truncated or corrupt weights file
        raise InputError(f"the weights of model {cfg.model} do not load: {one_line(error)}") from None
    plan = make_plan(loaded.params, rules_for(model_type))
    check_ranks(cfg, plan)
    return loaded, plan
