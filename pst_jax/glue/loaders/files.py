"""GLUE tasks from local CSV, TSV, JSON or JSON-lines files with the Hugging Face column names."""

import csv
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from datasets import DatasetDict

from pst_jax.data.text_files import utf8_errors
from pst_jax.glue.loaders.columns import Columns, missing_column, parse_label, to_dataset
from pst_jax.glue.tasks import GlueTask

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
      ValueError: for a missing column or text, an empty file or an unknown label (and ``UnicodeDecodeError``
        for a file that is not UTF-8; :func:`load_files` names its line).

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
                raise missing_column(key, path, found)
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
    return DatasetDict({split: to_dataset(task, _read_utf8(task, path)) for split, path in paths.items()})


def _read_utf8(task: GlueTask, path: Path) -> Columns:
    with utf8_errors(path):  # a file that is not UTF-8: name its line
        return read_file(task, path)
