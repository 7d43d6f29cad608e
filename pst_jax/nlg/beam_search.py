"""Batched, jitted beam search for Flax causal LMs with the semantics of LoRA's NLG decoder.

The PST paper decodes E2E, DART and WebNLG as LoRA does (microsoft/LoRA ``examples/NLG/src/gpt2_beam.py``):
beam 10, length penalty 0.8, no repeated 4-grams. Per prompt, with K beams and ``beam_scores`` the sums of
the beams' token log-probs, each step:

1. bans, on the next-token logits, every token that would repeat a 4-gram of the beam's *generated*
   tokens (fairseq's rule; the prompt is not searched, so names can be copied from it), then takes the
   log-softmax (the bans renormalise the distribution, as in LoRA);
2. takes the top K of ``beam_scores + log_probs`` over all beams and tokens (at the first step, beam 0 only);
3. every new beam ending in eos is a finished candidate scored ``beam_score / length ** length_penalty``
   (length counts the eos); the best candidate per prompt is kept and the beam dies (score ``-inf``).

After the last step, every beam still alive is a candidate at length ``max_new_tokens``. Dead beams hold
``-inf``: only sums with log-probs, divisions by positive constants and comparisons touch it, so no NaN
arises; a dead beam is never taken over a finite candidate and only ever scores ``-inf``, which never
replaces a kept candidate (a candidate exists as soon as one beam has died).

Prompts are left-padded: every row's last token is in the last column.

The model is Hugging Face's Flax GPT-2 or a Llama, Mistral or Gemma from :mod:`pst_jax.models` (any model with
``init_cache(batch, length)`` and a cached ``__call__`` that takes ``position_ids`` and an attention mask over
the whole cache). Their caches hold, per layer, ``cached_key`` and ``cached_value`` with the batch first
(``(batch, length, heads or key-value heads, head_dim)``) and a scalar ``cache_index``: every leaf with the
batch first is copied per beam and reordered with the beams; scalars are shared.

Example:
  >>> generate = make_generate(model, num_beams=10, max_new_tokens=64, length_penalty=0.8,
  ...                          no_repeat_ngram_size=4, eos_token_id=50256)
  >>> texts = decode_rows(tokenizer, np.asarray(generate(params, input_ids, attention_mask)), 50256)
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class _State(NamedTuple):
    step: jax.Array  # tokens generated so far
    cache: Any  # the model's KV cache, rows b * K + k
    logits: jax.Array  # [B*K, V] next-token logits
    scores: jax.Array  # [B, K] sums of the beams' log-probs; -inf for dead beams
    history: jax.Array  # [B, K, N] generated tokens, eos beyond `step`
    best_score: jax.Array  # [B] best finished candidate's normalised score; -inf while none
    best_tokens: jax.Array  # [B, N] its tokens, eos-filled


def _ban_repeated_ngrams(logits: jax.Array, history: jax.Array, step: jax.Array, n: int) -> jax.Array:
    """Sets to -inf the logits of tokens that would repeat an n-gram of the history (fairseq's rule).

    Args:
      logits: [M, V] float32 next-token logits.
      history: [M, N] generated tokens; only the first ``step`` columns count.
      step: number of tokens generated so far.
      n: n-gram size, 1 <= n < N.

    Returns:
      The logits with the bans applied.
    """
    rows, length = history.shape
    starts = np.arange(length - n + 1)
    windows = history[:, starts[:, None] + np.arange(n)]  # [M, J, n]: every n-gram position
    # The last n - 1 generated tokens; the slice start is clamped when step < n - 1, where no start is valid.
    prefix = jax.lax.dynamic_slice_in_dim(history, step - n + 1, n - 1, axis=1)
    complete = starts <= step - n  # the n-gram lies inside the history
    hits = jnp.all(windows[:, :, :-1] == prefix[:, None, :], axis=-1) & complete
    # Scattered with `min`: +inf leaves a logit as it is, whichever n-grams end in the same token.
    bans = jnp.where(hits, -jnp.inf, jnp.inf).astype(logits.dtype)
    return logits.at[jnp.arange(rows)[:, None], windows[:, :, -1]].min(bans)


def _log_probs(logits: jax.Array, history: jax.Array, step: jax.Array, n: int) -> jax.Array:
    """Float32 log-softmax of the logits after the n-gram bans (``n`` 0: none), which it renormalises."""
    logits = logits.astype(jnp.float32)
    if 0 < n < history.shape[-1]:
        logits = _ban_repeated_ngrams(logits, history, step, n)
    return jax.nn.log_softmax(logits, axis=-1)


def _keep_best(
    best_score: jax.Array, best_tokens: jax.Array, scores: jax.Array, history: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Per prompt, the first candidate with the highest score replaces the kept one if strictly better.

    Args:
      best_score: [B] kept scores.
      best_tokens: [B, N] kept tokens.
      scores: [B, K] candidates' normalised scores, -inf for non-candidates.
      history: [B, K, N] candidates' tokens.

    Returns:
      The updated ``best_score`` and ``best_tokens``.
    """
    beam = jnp.argmax(scores, axis=1)
    top = jnp.max(scores, axis=1)
    better = top > best_score
    tokens = jnp.take_along_axis(history, beam[:, None, None], axis=1)[:, 0]
    return jnp.where(better, top, best_score), jnp.where(better[:, None], tokens, best_tokens)


def _check_cache(cache: Any, batch: int) -> None:
    """A one-line ``ValueError`` for a cache leaf that beams cannot be copied along (shapes only: trace time)."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(cache):
        if leaf.ndim and leaf.shape[0] != batch:
            raise ValueError(
                f"beam search needs a KV cache whose arrays have the batch first; {jax.tree_util.keystr(path)} "
                f"has shape {leaf.shape} for a batch of {batch}"
            )


def beam_search(
    model: Any,
    params: Any,
    input_ids: jax.Array,
    attention_mask: jax.Array,
    *,
    num_beams: int = 10,
    max_new_tokens: int = 64,
    length_penalty: float = 0.8,
    no_repeat_ngram_size: int = 4,
    eos_token_id: int = 50256,
) -> jax.Array:
    """Beam search with LoRA's NLG semantics (see the module docstring); pure, for ``jax.jit``.

    Args:
      model: a ``FlaxGPT2LMHeadModel`` or a :mod:`pst_jax.models` decoder (see the module docstring).
      params: its parameters, e.g. ``model.params`` or a pruned copy.
      input_ids: [B, P] left-padded prompts.
      attention_mask: [B, P] 1 on prompt tokens, 0 on padding.
      num_beams: beams per prompt.
      max_new_tokens: tokens generated at most.
      length_penalty: exponent of the length that divides a finished beam's log-prob sum.
      no_repeat_ngram_size: n-grams of generated tokens that may not repeat; 0 disables.
      eos_token_id: token that ends a hypothesis; also fills the output after it.

    Returns:
      [B, max_new_tokens] int32: per prompt the best hypothesis's tokens, with its eos if it has one,
      then eos up to ``max_new_tokens`` columns.

    Raises:
      ValueError: (when traced) the model's cache has a leaf that is neither a scalar nor batch-first.
    """
    batch, width = input_ids.shape
    k, steps = num_beams, max_new_tokens
    # Length normalisers, index length - 1: exact float32 roundings of float64 powers, monotone in length.
    norms = jnp.asarray((np.arange(1, steps + 1, dtype=np.float64) ** length_penalty).astype(np.float32))

    mask = jnp.concatenate([attention_mask.astype(jnp.int32), jnp.ones((batch, steps), jnp.int32)], axis=1)
    positions = jnp.clip(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)
    cache = model.init_cache(batch, width + steps)
    _check_cache(cache, batch)
    out = model(input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache, params=params)
    # Beams are rows b * K + k; the scalar cache leaves (each layer's cache_index) are shared by all rows.
    cache = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0) if x.ndim else x, out.past_key_values)
    mask = jnp.repeat(mask, k, axis=0)
    last_position = jnp.repeat(positions[:, -1], k)

    def body(state: _State) -> _State:
        logp = _log_probs(state.logits, state.history.reshape(batch * k, steps), state.step, no_repeat_ngram_size)
        vocab = logp.shape[-1]
        totals = (state.scores[:, :, None] + logp.reshape(batch, k, vocab)).reshape(batch, k * vocab)
        scores, flat = jax.lax.top_k(totals, k)
        beam, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        history = jnp.take_along_axis(state.history, beam[:, :, None], axis=1).at[:, :, state.step].set(token)
        rows = (jnp.arange(batch)[:, None] * k + beam).reshape(-1)
        cache = jax.tree.map(lambda x: x[rows] if x.ndim else x, state.cache)
        finished = token == eos_token_id
        best = _keep_best(
            state.best_score, state.best_tokens, jnp.where(finished, scores / norms[state.step], -jnp.inf), history
        )
        scores = jnp.where(finished, -jnp.inf, scores)
        step_out = model(
            token.reshape(-1, 1),
            attention_mask=mask,
            position_ids=(last_position + 1 + state.step)[:, None],
            past_key_values=cache,
            params=params,
        )
        return _State(state.step + 1, step_out.past_key_values, step_out.logits[:, -1], scores, history, *best)

    def running(state: _State) -> jax.Array:
        if length_penalty < 0:
            return state.step < steps
        # With length_penalty >= 0, a live beam's sum s <= 0 only falls as it grows, and any candidate it
        # yields, at length L <= N, scores at most s / L ** lp <= s / N ** lp. A kept candidate at least
        # that good for every live beam is never strictly beaten, so stopping changes nothing.
        bound = jnp.max(state.scores, axis=1) / norms[-1]
        done = jnp.all((state.best_score > -jnp.inf) & (state.best_score >= bound))
        return (state.step < steps) & ~done

    initial = _State(
        step=jnp.array(0, jnp.int32),
        cache=cache,
        logits=jnp.repeat(out.logits[:, -1], k, axis=0),
        # All beams start as copies of the prompt: only beam 0 may extend at the first step.
        scores=jnp.tile(jnp.array([0.0] + [-jnp.inf] * (k - 1), jnp.float32), (batch, 1)),
        history=jnp.full((batch, k, steps), eos_token_id, jnp.int32),
        best_score=jnp.full((batch,), -jnp.inf, jnp.float32),
        best_tokens=jnp.full((batch, steps), eos_token_id, jnp.int32),
    )
    final = jax.lax.while_loop(running, body, initial)
    # LoRA's last call: every live beam is a candidate at full length (a no-op after an early stop).
    _, tokens = _keep_best(final.best_score, final.best_tokens, final.scores / norms[-1], final.history)
    return tokens


def make_generate(
    model: Any,
    *,
    num_beams: int,
    max_new_tokens: int,
    length_penalty: float,
    no_repeat_ngram_size: int,
    eos_token_id: int,
) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    """``beam_search`` jitted over ``(params, input_ids, attention_mask)``; compiles once per prompt shape."""
    search = functools.partial(
        beam_search,
        model,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        length_penalty=length_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size,
        eos_token_id=eos_token_id,
    )
    return jax.jit(search)


def decode_rows(tokenizer: Any, tokens: np.ndarray, eos_token_id: int) -> list[str]:
    """Texts of generated rows: each cut before its first eos, decoded without space clean-up, stripped."""
    texts = []
    for row in np.asarray(tokens):
        ends = np.flatnonzero(row == eos_token_id)
        kept = row[: ends[0]] if ends.size else row
        texts.append(tokenizer.decode(kept.tolist(), clean_up_tokenization_spaces=False).strip())
    return texts
