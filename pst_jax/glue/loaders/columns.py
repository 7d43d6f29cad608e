"""The columns every GLUE loader returns, and the labels in them.

Every loader returns a :class:`datasets.DatasetDict` with the split ``"train"`` plus the task's
``eval_splits``, each with the columns ``task.text_keys + ("label",)``: ``label`` holds int64 class ids
(as in the Hugging Face ``glue`` dataset), or float32 scores for STS-B.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, Value

from pst_jax.glue.tasks import GlueTask

# String labels of the original GLUE files, in the order of the Hugging Face class ids.
STRING_LABELS: dict[str, tuple[str, ...]] = {
    "mnli": ("entailment", "neutral", "contradiction"),
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
}

Columns = dict[str, list[Any]]


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


def missing_column(column: str, path: Path | str, found: Sequence[str]) -> ValueError:
    return ValueError(f"column {column!r} missing in {path}; found columns: {list(found)}")
