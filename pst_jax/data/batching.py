"""Tokenised text to fixed-shape NumPy batches: a few length buckets, so nothing recompiles per batch.

Every batch has exactly ``batch_size`` rows (the last one is filled with rows of weight 0, which
losses and metrics ignore) and a length taken from a short list of buckets (powers of two up to
``max_length``): a jitted step compiles once per bucket, not once per batch.
"""

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np


class Encoded(NamedTuple):
    """A tokenised split: ragged token rows and their labels."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: np.ndarray
    pad_id: int


def encode(tokenizer: Any, texts: Sequence[Sequence[str]], labels: Sequence[Any], max_length: int) -> Encoded:
    """Tokenises one or two text columns (truncated to ``max_length``, not padded).

    Args:
      tokenizer: a Hugging Face tokenizer.
      texts: one sequence of strings per text column (1 or 2 columns).
      labels: one label per row.
      max_length: truncation length in tokens, special tokens included.
    """
    out = tokenizer(*[list(column) for column in texts], truncation=True, max_length=max_length)
    token_types = out.get("token_type_ids")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(out["input_ids"], token_types, np.asarray(labels), pad_id)


def length_buckets(max_length: int, smallest: int = 16, halves: bool = False) -> tuple[int, ...]:
    """Powers of two from ``smallest`` below ``max_length``, then ``max_length``; with ``halves``, also each
    power of two times 1.5 (less padding for one more compiled width per octave).

    Example:
      >>> length_buckets(128)
      (16, 32, 64, 128)
      >>> length_buckets(64, smallest=32, halves=True)
      (32, 48, 64)
    """
    buckets = []
    length = smallest
    while length < max_length:
        buckets.append(length)
        if halves and length * 3 // 2 < max_length:
            buckets.append(length * 3 // 2)
        length *= 2
    return (*buckets, max_length)


def length_grouped_order(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, window: int = 50
) -> np.ndarray:
    """A shuffled order whose consecutive ``batch_size`` rows have similar lengths (less padding).

    Rows are shuffled, cut into windows of ``window`` batches, sorted by length inside each window,
    cut into batches, and the batches shuffled: every epoch sees different, still random, batches.
    """
    order = rng.permutation(len(lengths))
    chunk = window * batch_size
    grouped = [sorted(order[i : i + chunk], key=lambda j: lengths[j]) for i in range(0, len(order), chunk)]
    order = np.concatenate(grouped)
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return np.concatenate([groups[i] for i in rng.permutation(len(groups))])


def batches(
    data: Encoded,
    batch_size: int,
    buckets: Sequence[int],
    rng: np.random.Generator | None = None,
    group_by_length: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Fixed-shape batches over ``data``, shuffled when ``rng`` is given.

    Yields dicts with ``input_ids``, ``attention_mask``, ``token_type_ids`` (when the tokenizer
    makes them), ``labels`` and ``weights`` (1 for real rows, 0 for fill rows), each with
    ``batch_size`` rows; the length is the smallest bucket that holds the batch's longest row.
    With ``group_by_length`` (and an ``rng``) rows of similar length are batched together.
    """
    n = len(data.input_ids)
    if rng is None:
        order = np.arange(n)
    elif group_by_length:
        order = length_grouped_order(np.array([len(row) for row in data.input_ids]), batch_size, rng)
    else:
        order = rng.permutation(n)
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size]
        longest = max(len(data.input_ids[i]) for i in rows)
        length = next(b for b in buckets if b >= longest)
        ids = np.full((batch_size, length), data.pad_id, np.int32)
        mask = np.zeros((batch_size, length), np.int32)
        types = np.zeros((batch_size, length), np.int32)
        for j, i in enumerate(rows):
            row = data.input_ids[i]
            ids[j, : len(row)] = row
            mask[j, : len(row)] = 1
            if data.token_type_ids is not None:
                types[j, : len(row)] = data.token_type_ids[i]
        labels = np.zeros(batch_size, data.labels.dtype)
        labels[: len(rows)] = data.labels[rows]
        weights = np.zeros(batch_size, np.float32)
        weights[: len(rows)] = 1.0
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels, "weights": weights}
        if data.token_type_ids is not None:
            batch["token_type_ids"] = types
        yield batch


def num_batches(data: Encoded, batch_size: int) -> int:
    """Batches per pass over ``data`` (the last one partly filled)."""
    return -(-len(data.input_ids) // batch_size)
