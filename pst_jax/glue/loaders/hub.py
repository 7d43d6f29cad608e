"""GLUE from the Hugging Face hub (``nyu-mll/glue``), or from the local ``datasets`` cache."""

import datasets
from datasets import DatasetDict

from pst_jax.glue.loaders.columns import features
from pst_jax.glue.tasks import GlueTask


def load_glue_hub(task: GlueTask, cache_dir: str | None = None) -> DatasetDict:
    """A GLUE task from the Hugging Face hub (``nyu-mll/glue``), or from its local cache.

    Drops ``idx`` and the test splits; labels become plain int64 ids (float32 scores for STS-B).
    This needs the network unless the dataset is cached: check :func:`~pst_jax.data.hub.hub_reachable` first.

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
