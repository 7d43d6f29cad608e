"""GLUE task specifications and their metrics, as percentages.

Column names and label ids follow the Hugging Face ``glue`` dataset (``nyu-mll/glue``).
"""

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


class GlueTask(NamedTuple):
    """One GLUE task.

    Attributes:
      name: task name as in the Hugging Face ``glue`` dataset, e.g. ``"sst2"``.
      text_keys: text columns, one sentence or a pair, e.g. ``("question1", "question2")``.
      num_labels: 1 for STS-B (regression), 3 for MNLI, else 2.
      metrics: names of the metrics :func:`compute_metrics` returns.
      selection_metric: the metric used for model selection, one of ``metrics``.
      eval_splits: evaluation splits, ``("validation",)``, or matched and mismatched for MNLI.
      glue_dir: folder name of the task in the original GLUE layout, e.g. ``"SST-2"``.

    Example:
      >>> TASKS["qqp"].text_keys
      ('question1', 'question2')
    """

    name: str
    text_keys: tuple[str, ...]
    num_labels: int
    metrics: tuple[str, ...]
    selection_metric: str
    eval_splits: tuple[str, ...]
    glue_dir: str


_VALIDATION = ("validation",)

TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask("cola", ("sentence",), 2, ("matthews_correlation",), "matthews_correlation", _VALIDATION, "CoLA"),
        GlueTask("sst2", ("sentence",), 2, ("accuracy",), "accuracy", _VALIDATION, "SST-2"),
        GlueTask("mrpc", ("sentence1", "sentence2"), 2, ("f1", "accuracy"), "f1", _VALIDATION, "MRPC"),
        GlueTask("qqp", ("question1", "question2"), 2, ("f1", "accuracy"), "f1", _VALIDATION, "QQP"),
        GlueTask("stsb", ("sentence1", "sentence2"), 1, ("pearson", "spearman"), "pearson", _VALIDATION, "STS-B"),
        GlueTask(
            "mnli",
            ("premise", "hypothesis"),
            3,
            ("accuracy",),
            "accuracy",
            ("validation_matched", "validation_mismatched"),
            "MNLI",
        ),
        GlueTask("qnli", ("question", "sentence"), 2, ("accuracy",), "accuracy", _VALIDATION, "QNLI"),
        GlueTask("rte", ("sentence1", "sentence2"), 2, ("accuracy",), "accuracy", _VALIDATION, "RTE"),
        GlueTask("wnli", ("sentence1", "sentence2"), 2, ("accuracy",), "accuracy", _VALIDATION, "WNLI"),
    )
}


def get_task(name: str) -> GlueTask:
    """Looks up a GLUE task by its Hugging Face name.

    Args:
      name: one of ``cola, mnli, mrpc, qnli, qqp, rte, sst2, stsb, wnli``.

    Returns:
      The task's :class:`GlueTask`.

    Raises:
      ValueError: for an unknown name.

    Example:
      >>> get_task("mnli").num_labels
      3
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(sorted(TASKS))}")
    return TASKS[name]


def _as_labels(task: GlueTask, predictions: np.ndarray, n: int) -> np.ndarray:
    """Class ids from logits ``(n, num_labels)`` or already-argmaxed ids ``(n,)``."""
    predictions = np.asarray(predictions)
    if predictions.ndim == 2 and predictions.shape == (n, task.num_labels):
        return predictions.argmax(axis=-1)
    if predictions.ndim == 1 and predictions.shape == (n,):
        if not np.all(np.mod(predictions, 1) == 0):
            raise ValueError(
                f"{task.name}: 1-D predictions must be integer class ids, got non-integer values; "
                f"pass logits of shape ({n}, {task.num_labels}) instead"
            )
        return predictions.astype(np.int64)
    raise ValueError(
        f"{task.name}: predictions of shape {predictions.shape} do not match {n} labels; "
        f"pass logits of shape ({n}, {task.num_labels}) or class ids of shape ({n},)"
    )


def _as_scores(task: GlueTask, predictions: np.ndarray, n: int) -> np.ndarray:
    """Regression scores from ``(n,)`` or ``(n, 1)``."""
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.shape in ((n,), (n, 1)):
        return predictions.reshape(n)
    raise ValueError(
        f"{task.name}: predictions of shape {predictions.shape} do not match {n} labels; "
        f"pass scores of shape ({n},) or ({n}, 1)"
    )


def _correlation(fn: Callable[..., Any], x: np.ndarray, y: np.ndarray) -> float:
    """``fn(x, y)[0]``; 0.0 where it is undefined (a constant input gives nan)."""
    value = float(fn(x, y)[0])
    return 0.0 if np.isnan(value) else value


def compute_metrics(task: GlueTask, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's GLUE metrics, as percentages (x100, not rounded).

    Args:
      task: the task.
      predictions: classification: logits ``(n, num_labels)`` or class ids ``(n,)``;
        STS-B: scores ``(n,)`` or ``(n, 1)``.
      labels: gold class ids ``(n,)``, or gold scores ``(n,)`` for STS-B.

    Returns:
      ``{metric: value}`` for every name in ``task.metrics``. An undefined metric (a Pearson or
      Spearman correlation with constant predictions, an F1 with no positive prediction nor label)
      is 0.0 rather than nan.

    Raises:
      ValueError: for empty inputs or shapes that do not match.

    Example:
      >>> compute_metrics(TASKS["sst2"], np.array([[0.1, 0.9], [2.0, -1.0]]), np.array([1, 1]))
      {'accuracy': 50.0}
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] == 0:
        raise ValueError(f"{task.name}: labels must be a non-empty 1-D array, got shape {labels.shape}")
    n = labels.shape[0]
    if task.num_labels == 1:
        scores, gold = _as_scores(task, predictions, n), labels.astype(np.float64)
        metric_fns = {
            "pearson": lambda: _correlation(stats.pearsonr, scores, gold),
            "spearman": lambda: _correlation(stats.spearmanr, scores, gold),
        }
    else:
        predicted, gold = _as_labels(task, predictions, n), labels.astype(np.int64)
        metric_fns = {
            "accuracy": lambda: float(accuracy_score(gold, predicted)),
            # zero_division=0.0: F1 is undefined without positive predictions or labels.
            "f1": lambda: float(f1_score(gold, predicted, zero_division=0.0)),
            # sklearn returns 0.0 where the MCC is undefined (a constant prediction or label).
            "matthews_correlation": lambda: float(matthews_corrcoef(gold, predicted)),
        }
    with warnings.catch_warnings():
        # sklearn and scipy warn where a metric is undefined (e.g. a single class); the values above handle that.
        warnings.simplefilter("ignore")
        return {name: 100.0 * metric_fns[name]() for name in task.metrics}


def majority_baseline(task: GlueTask, train_labels: np.ndarray, eval_labels: np.ndarray) -> dict[str, float]:
    """Metrics of always predicting the train set's most frequent class (STS-B: the train mean).

    Ties between classes go to the smallest class id. With constant predictions the Matthews
    correlation and the STS-B correlations are 0.0.

    Args:
      task: the task.
      train_labels: train class ids (or scores for STS-B), shape ``(n_train,)``.
      eval_labels: evaluation class ids (or scores), shape ``(n_eval,)``.

    Returns:
      :func:`compute_metrics` of the constant prediction on ``eval_labels``.

    Example:
      >>> majority_baseline(TASKS["rte"], np.array([0, 1, 1]), np.array([1, 0, 1, 1]))
      {'accuracy': 75.0}
    """
    train_labels = np.asarray(train_labels)
    eval_labels = np.asarray(eval_labels)
    if train_labels.ndim != 1 or train_labels.shape[0] == 0:
        raise ValueError(f"{task.name}: train_labels must be a non-empty 1-D array, got shape {train_labels.shape}")
    n = eval_labels.shape[0]
    if task.num_labels == 1:
        predictions = np.full(n, float(train_labels.astype(np.float64).mean()))
    else:
        counts = np.bincount(train_labels.astype(np.int64), minlength=task.num_labels)
        predictions = np.full(n, int(counts.argmax()), dtype=np.int64)
    return compute_metrics(task, predictions, eval_labels)
