"""pst_jax: Parameter-Efficient Sparsity (PST, Li et al., IJCAI 2022) for Flax models, in JAX.

The package is layered; each layer imports only the ones below it (checked by ``lint-imports``):

- :mod:`pst_jax.glue`, :mod:`pst_jax.nlg`: the two applications (GLUE classification, data-to-text generation);
- :mod:`pst_jax.training`, :mod:`pst_jax.data`: the training stack, and the data handling both applications share;
- :mod:`pst_jax.models`: Llama, Mistral and Gemma decoders with numerics that match transformers' PyTorch models;
- :mod:`pst_jax.methods`: the fine-tuning methods (PST, dense, the pruning baselines, LoRA) and their registry;
- :mod:`pst_jax.core`: PST's math over one matrix and a whole parameter tree; no Hugging Face, no I/O.

This module is the curated public API.
"""

from pst_jax import methods
from pst_jax.core.config import PSTConfig
from pst_jax.core.model import init_pst, kernel_sparsity, masks, merge
from pst_jax.core.pst import adapted_kernel, factor_shapes, importance, init_factors, masked_kernel
from pst_jax.core.rules import (
    BERT_RULES,
    GEMMA_RULES,
    GPT2_RULES,
    LLAMA_RULES,
    MISTRAL_RULES,
    ROBERTA_RULES,
    Matrix,
    Plan,
    Rule,
    RuleSet,
    make_plan,
    read_matrix,
    rules_for,
)
from pst_jax.core.schedule import cubic_sparsity
from pst_jax.core.topk import keep_mask, prune_count, topk_mask
from pst_jax.methods import lora, pruning
from pst_jax.methods import registry as baselines
from pst_jax.methods.base import Method, export_model
from pst_jax.methods.count import ParamCount, count_parameters, param_shapes
from pst_jax.methods.lora import lora_apply_loss, lora_interceptor
from pst_jax.methods.registry import METHOD_NAMES, make_method, trainable_parameters
from pst_jax.nlg.beam_search import beam_search, make_generate
from pst_jax.training.losses import causal_lm_loss, classification_loss
from pst_jax.training.optim import learning_rate_schedule, make_optimizer, param_labels
from pst_jax.training.run import setup_run, train_epochs
from pst_jax.training.sharding import make_mesh, replicate, shard_batch
from pst_jax.training.step import (
    TrainState,
    init_train_state,
    jit_eval_step,
    jit_train_step,
    make_eval_step,
    make_train_step,
)

__version__ = "0.1.0"

__all__ = [
    "BERT_RULES",
    "METHOD_NAMES",
    "GEMMA_RULES",
    "GPT2_RULES",
    "LLAMA_RULES",
    "MISTRAL_RULES",
    "ROBERTA_RULES",
    "Matrix",
    "ParamCount",
    "Plan",
    "PSTConfig",
    "Rule",
    "RuleSet",
    "TrainState",
    "adapted_kernel",
    "baselines",
    "beam_search",
    "causal_lm_loss",
    "classification_loss",
    "count_parameters",
    "cubic_sparsity",
    "Method",
    "methods",
    "lora",
    "pruning",
    "export_model",
    "factor_shapes",
    "importance",
    "init_factors",
    "init_pst",
    "init_train_state",
    "setup_run",
    "train_epochs",
    "jit_eval_step",
    "jit_train_step",
    "keep_mask",
    "kernel_sparsity",
    "learning_rate_schedule",
    "lora_apply_loss",
    "lora_interceptor",
    "make_eval_step",
    "make_generate",
    "make_mesh",
    "make_method",
    "make_optimizer",
    "make_plan",
    "make_train_step",
    "masked_kernel",
    "masks",
    "merge",
    "param_labels",
    "param_shapes",
    "prune_count",
    "read_matrix",
    "replicate",
    "rules_for",
    "shard_batch",
    "topk_mask",
    "trainable_parameters",
]
