"""GLUE data loading: the Hugging Face hub, the original GLUE folder layout, local files, and an embedded default.

Every loader returns a :class:`datasets.DatasetDict` with the split ``"train"`` plus the task's
``eval_splits``, each with the columns ``task.text_keys + ("label",)``: ``label`` holds int64 class ids
(as in the Hugging Face ``glue`` dataset), or float32 scores for STS-B. Test splits are never loaded.

- :mod:`~pst_jax.glue.loaders.hub`: ``nyu-mll/glue`` from the hub or its cache (:func:`load_glue_hub`);
- :mod:`~pst_jax.glue.loaders.tsv`: the original GLUE folder layout (:func:`load_glue_dir`);
- :mod:`~pst_jax.glue.loaders.files`: local CSV/TSV/JSON files with the hub's column names (:func:`load_files`);
- :mod:`~pst_jax.glue.loaders.embedded`: Rotten Tomatoes snippets, the offline SST-2 default
  (:func:`load_rotten_tomatoes`);
- :mod:`~pst_jax.glue.loaders.columns`: the columns and labels they all return.
"""

from pst_jax.glue.loaders.embedded import load_rotten_tomatoes
from pst_jax.glue.loaders.files import load_files
from pst_jax.glue.loaders.hub import load_glue_hub
from pst_jax.glue.loaders.tsv import load_glue_dir

__all__ = ["load_files", "load_glue_dir", "load_glue_hub", "load_rotten_tomatoes"]
