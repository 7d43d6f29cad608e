"""GLUE from its original folder layout (``data_dir/SST-2/train.tsv``, ...), as ``download_glue_data.py`` writes it."""

import csv
from pathlib import Path

from datasets import DatasetDict

from pst_jax.data.text_files import utf8_errors
from pst_jax.glue.loaders.columns import Columns, missing_column, parse_label, to_dataset
from pst_jax.glue.tasks import GlueTask

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
      ValueError: for a missing column, a row with too few fields, an unknown label, no rows, or a byte that is
        not UTF-8 (naming its line).

    Example:
      >>> from pst_jax.glue.tasks import TASKS
      >>> read_glue_tsv(TASKS["sst2"], Path("glue/SST-2/dev.tsv"))["label"][:2]  # doctest: +SKIP
      [1, 0]
    """
    source = GLUE_COLUMNS[task.name]
    keys = [*task.text_keys, "label"]
    columns: Columns = {key: [] for key in keys}
    with utf8_errors(path), open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
        if isinstance(source[0], str):
            found = [name.strip() for name in next(reader, [])]
            for name in source:
                if name not in found:
                    raise missing_column(name, path, found)
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
    if not columns["label"]:
        raise ValueError(f"no rows in {path}; give the task's original GLUE file")
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
