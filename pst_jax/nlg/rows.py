"""Causal-LM token rows for data-to-text: training rows with a target-only loss mask, and prompts.

Rows follow LoRA's ``src/gpt2_encode.py`` (run with ``--add_bos --add_eos`` by ``create_datasets.sh``)
and ``FT_Dataset`` in ``src/data_utils.py``: ``tokens(source) + [<|endoftext|>]`` is the prompt (the
end-of-text token doubles as the separator), ``tokens(" " + reference) + [<|endoftext|>]`` the target;
the two are concatenated and cut to the first ``max_length`` tokens, and only target tokens carry loss.
A tokenizer that starts every text with its bos token (Llama's, Mistral's, Gemma's: their models were
pre-trained on sequences that start with it) puts that bos first in every row and prompt too; GPT-2's adds
none, so its rows are exactly LoRA's.

Batches have a fixed number of rows and a width from a short list of length buckets, as
:mod:`pst_jax.data.batching` makes them for classification, so a jitted step compiles once per bucket.
"""

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from pst_jax.data.batching import length_grouped_order
from pst_jax.nlg.data import NLGExample


def _special_ids(tokenizer: Any) -> tuple[int, int]:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token; use GPT-2's tokenizer (<|endoftext|>)")
    pad = tokenizer.pad_token_id
    return eos, eos if pad is None else pad


def _bos(tokenizer: Any) -> list[int]:
    """``[bos_token_id]`` where the tokenizer starts a text with it by itself (Llama, Gemma), else ``[]`` (GPT-2)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    marked, plain = tokenizer("x")["input_ids"], tokenizer("x", add_special_tokens=False)["input_ids"]
    return [bos] if marked[:1] == [bos] and plain[:1] != [bos] else []


def _tokens(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def _width(lengths: list[int], pad_to: int | None) -> int:
    longest = max(lengths, default=0)
    if pad_to is not None and pad_to < longest:
        raise ValueError(f"pad_to={pad_to} is shorter than the longest row ({longest} tokens); raise it or drop it")
    return longest if pad_to is None else pad_to


def encode_for_lm(
    tokenizer: Any, examples: Sequence[NLGExample], max_length: int, pad_to: int | None = None
) -> dict[str, np.ndarray]:
    """Training rows: one per (source, reference) pair, in example then reference order, right-padded.

    Each row is ``tokens(source) + [eos] + tokens(" " + reference) + [eos]`` (after ``[bos]`` where the
    tokenizer starts texts with it, see the module docstring), cut to its first
    ``max_length`` tokens (so a long row loses the end of its reference and its final eos, and a prompt of
    ``max_length`` tokens or more leaves no target at all: see :func:`rows_without_target`), then padded to
    the longest row (or ``pad_to``) with the tokenizer's pad id (its eos where it has none).

    ``loss_mask`` is aligned with ``input_ids``: 1 where the token is a target token (reference or its
    final eos), 0 on the bos, the prompt, the separator and padding. A causal LM predicts token ``t`` from the
    logits at ``t - 1``, so weight the loss of ``logits[:, :-1]`` against ``input_ids[:, 1:]`` with
    ``loss_mask[:, 1:]`` (LoRA's ``FT_Dataset`` mask is that shifted mask).

    Args:
      tokenizer: a Hugging Face tokenizer with an eos token (GPT-2's, Llama's, ...).
      examples: the split's examples.
      max_length: the longest row, in tokens (LoRA's ``--seq_len``, 512 in the paper).
      pad_to: pad every row to this width instead of the longest row's (a fixed shape for ``jit``).

    Returns:
      int32 arrays ``input_ids``, ``attention_mask`` and ``loss_mask``, each ``[rows, width]``.

    Example:
      >>> rows = encode_for_lm(tokenizer, [NLGExample("a : b", ("B.",))], 16)  # doctest: +SKIP
      >>> rows["loss_mask"].tolist()  # doctest: +SKIP
      [[0, 0, 0, 0, 1, 1, 1]]
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, not {max_length}")
    eos, pad = _special_ids(tokenizer)
    bos = _bos(tokenizer)
    prompts = [bos + ids + [eos] for ids in _tokens(tokenizer, [example.source for example in examples])]
    references = [(i, reference) for i, example in enumerate(examples) for reference in example.references]
    targets = _tokens(tokenizer, [" " + reference for _, reference in references])
    rows, masks = [], []
    for (i, _), target in zip(references, targets, strict=True):
        rows.append((prompts[i] + target + [eos])[:max_length])
        masks.append(([0] * len(prompts[i]) + [1] * (len(target) + 1))[:max_length])
    width = _width([len(row) for row in rows], pad_to)
    input_ids = np.full((len(rows), width), pad, np.int32)
    attention_mask = np.zeros((len(rows), width), np.int32)
    loss_mask = np.zeros((len(rows), width), np.int32)
    for j, (row, mask) in enumerate(zip(rows, masks, strict=True)):
        input_ids[j, : len(row)] = row
        attention_mask[j, : len(row)] = 1
        loss_mask[j, : len(row)] = mask
    return {"input_ids": input_ids, "attention_mask": attention_mask, "loss_mask": loss_mask}


def rows_without_target(rows: dict[str, np.ndarray]) -> np.ndarray:
    """Indices of the :func:`encode_for_lm` rows whose target was cut off entirely (their prompt fills
    ``max_length``): they carry no loss, so a split of only such rows has loss 0 and perplexity 1.

    Example:
      >>> rows_without_target({"loss_mask": np.array([[0, 1], [0, 0]])}).tolist()
      [1]
    """
    return np.flatnonzero(rows["loss_mask"].sum(axis=1) == 0)


def encode_prompts(
    tokenizer: Any, sources: Sequence[str], max_length: int, pad_to: int | None = None
) -> dict[str, np.ndarray]:
    """Generation prompts ``tokens(source) + [eos]`` (after the tokenizer's bos, as :func:`encode_for_lm`),
    LEFT-padded so that every row ends at the last column.

    Left padding lets a batch continue from one position; give the model position ids from the mask
    (``attention_mask.cumsum(-1) - 1``, as Hugging Face's Flax GPT-2 ``generate`` does). A prompt longer
    than ``max_length`` keeps its last ``max_length`` tokens, as LoRA's ``FT_Dataset`` query does, so the
    separator that starts generation is never cut (and a bos stays first).

    Args:
      tokenizer: a Hugging Face tokenizer with an eos token.
      sources: the linearised inputs (``NLGExample.source``).
      max_length: the longest prompt, in tokens (LoRA: ``seq_len - eval_len``).
      pad_to: pad every row to this width instead of the longest row's.

    Returns:
      int32 arrays ``input_ids`` and ``attention_mask``, each ``[len(sources), width]``.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, not {max_length}")
    eos, pad = _special_ids(tokenizer)
    bos = _bos(tokenizer)
    rows = [
        (bos + (ids + [eos])[-max(max_length - len(bos), 1) :])[-max_length:]
        for ids in _tokens(tokenizer, list(sources))
    ]
    width = _width([len(row) for row in rows], pad_to)
    input_ids = np.full((len(rows), width), pad, np.int32)
    attention_mask = np.zeros((len(rows), width), np.int32)
    for j, row in enumerate(rows):
        input_ids[j, width - len(row) :] = row
        attention_mask[j, width - len(row) :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def lm_batches(
    rows: dict[str, np.ndarray],
    batch_size: int,
    buckets: Sequence[int],
    rng: np.random.Generator | None = None,
    group_by_length: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Fixed-shape batches of :func:`encode_for_lm` rows, shuffled when ``rng`` is given.

    Each batch has ``batch_size`` rows (the last one filled with rows of weight 0 whose masks are all
    zero) and the width of the smallest bucket that holds its longest row: the rows' first columns (they
    are right-padded), with id 0 and zero masks in any column or row added.

    Yields ``input_ids``, ``attention_mask``, ``loss_mask`` and ``weights``.
    """
    lengths = rows["attention_mask"].sum(axis=1)
    n = len(lengths)
    if rng is None:
        order = np.arange(n)
    elif group_by_length:
        order = length_grouped_order(lengths, batch_size, rng)
    else:
        order = rng.permutation(n)
    for start in range(0, n, batch_size):
        chosen = order[start : start + batch_size]
        width = next(b for b in buckets if b >= lengths[chosen].max())
        batch = {}
        for name in ("input_ids", "attention_mask", "loss_mask"):
            values = np.zeros((batch_size, width), np.int32)  # masked out: any id would do
            cut = rows[name][chosen, :width]
            values[: len(chosen), : cut.shape[1]] = cut
            batch[name] = values
        batch["weights"] = (np.arange(batch_size) < len(chosen)).astype(np.float32)
        yield batch


def prompt_batches(
    tokenizer: Any, sources: Sequence[str], batch_size: int, max_length: int, buckets: Sequence[int]
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Left-padded prompt batches of ``batch_size`` rows, in order, as ``(batch, real_rows)``.

    The width is the smallest bucket that holds the batch's longest prompt (cut to ``max_length``); the
    last batch is filled with copies of its first prompt, whose outputs the caller drops.
    """
    _, pad = _special_ids(tokenizer)
    for start in range(0, len(sources), batch_size):
        chunk = list(sources[start : start + batch_size])
        filled = chunk + [chunk[0]] * (batch_size - len(chunk))
        prompts = encode_prompts(tokenizer, filled, max_length)  # left-padded to its longest prompt
        extra = next(b for b in buckets if b >= prompts["input_ids"].shape[1]) - prompts["input_ids"].shape[1]
        yield (
            {
                "input_ids": np.pad(prompts["input_ids"], ((0, 0), (extra, 0)), constant_values=pad),
                "attention_mask": np.pad(prompts["attention_mask"], ((0, 0), (extra, 0))),
            },
            len(chunk),
        )
