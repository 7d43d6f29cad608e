"""Task losses over Hugging Face Flax models, as ``loss_fn(params, batch, dropout_rng) -> (loss, aux)``.

``dropout_rng=None`` means evaluation (dropout off). Rows with ``batch["weights"] == 0`` (padding
rows that fill the last batch to a fixed shape) do not count.
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from pst_jax.core.types import Array, Batch, LossFn, Params

_TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _weighted_mean(values: Array, weights: Array) -> Array:
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def classification_loss(model: Any) -> LossFn:
    """Cross-entropy on integer ``labels``, or mean squared error when ``model.config.num_labels == 1``.

    Aux: ``{"logits": (batch, num_labels)}``, in float32: a model computing in bfloat16 (``--dtype``) has its
    logits upcast before the softmax or the squared error, as :func:`causal_lm_loss` does.
    """
    regression = model.config.num_labels == 1

    def loss_fn(params: Params, batch: Batch, dropout_rng: Array | None):
        inputs = {k: batch[k] for k in _TEXT_INPUTS if k in batch}
        logits = model(**inputs, params=params, dropout_rng=dropout_rng, train=dropout_rng is not None).logits
        logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
        labels = batch["labels"]
        if regression:
            per_row = (logits[:, 0] - labels) ** 2
        else:
            per_row = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        weights = batch.get("weights", jnp.ones_like(per_row))
        return _weighted_mean(per_row, weights), {"logits": logits}

    return loss_fn


def causal_lm_loss(model: Any, label_smoothing: float = 0.0) -> LossFn:
    """Next-token cross-entropy with label smoothing, on tokens where ``loss_mask`` is 1.

    ``loss_mask`` (default: ``attention_mask``) marks the positions whose token is a target, so
    a prompt can be excluded from the loss. Smoothing follows the LoRA NLG code:
    ``(1 - eps) * nll + eps * mean_v(-log p_v)``. Aux: ``{"tokens": number of target tokens}``.
    """

    def loss_fn(params: Params, batch: Batch, dropout_rng: Array | None):
        ids = batch["input_ids"]
        attention = batch.get("attention_mask", jnp.ones_like(ids))
        logits = model(
            ids, attention_mask=attention, params=params, dropout_rng=dropout_rng, train=dropout_rng is not None
        ).logits
        logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32))
        nll = -jnp.take_along_axis(logp, ids[:, 1:, None], axis=-1)[..., 0]
        per_token = (1.0 - label_smoothing) * nll - label_smoothing * jnp.mean(logp, axis=-1)
        targets = batch.get("loss_mask", attention)[:, 1:].astype(jnp.float32)
        return _weighted_mean(per_token, targets), {"tokens": jnp.sum(targets)}

    return loss_fn
