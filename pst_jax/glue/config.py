"""The settings of a GLUE run (:class:`GlueConfig`), checked before anything loads, and the recipes that fill them.

:func:`check_config` checks every flag (task, method, sparsity, files, model path) with one-line errors;
:func:`resolve_recipe` fills the settings left at ``None`` from the paper's recipe or the embedded CPU one;
:func:`saved_config` reads back the config a run wrote.
"""

import dataclasses
import json
from pathlib import Path

from pst_jax.data.hub import check_model_folder, looks_like_path
from pst_jax.glue.tasks import TASKS, GlueTask, get_task
from pst_jax.training.errors import InputError
from pst_jax.training.method_config import MethodConfig, check_run_settings
from pst_jax.training.processes import ProcessConfig
from pst_jax.training.run_folder import FolderConfig
from pst_jax.training.settings import setting

# The paper's recipe (BERT-base, GLUE) and the embedded CPU default; explicit flags override both.
PAPER_RECIPE = {"learning_rate": 3e-5, "epochs": 20, "max_length": 128, "dtype": "float32", "frozen_dtype": "float32"}
PAPER_EPOCHS = {"mnli": 10, "qqp": 10}
EMBEDDED_RECIPE = {
    "learning_rate": 8e-4,
    "epochs": 1.8,
    "max_length": 32,
    "dtype": "bfloat16",
    "frozen_dtype": "bfloat16",
}


@dataclasses.dataclass
class GlueConfig(ProcessConfig, FolderConfig, MethodConfig):
    """Every setting of a GLUE run; ``None`` means "the recipe's default" (resolved before training)."""

    task: str = setting("sst2", f"one of {', '.join(TASKS)}")
    model: str | None = setting(
        None, "hub id or local folder of a Flax-loadable BERT/RoBERTa (default bert-base-uncased)"
    )
    learning_rate: float | None = setting(None, "default 3e-5 (paper), 8e-4 for the embedded default")
    batch_size: int = setting(32, "global, across devices")
    eval_batch_size: int = setting(64, "evaluation batch, global across devices")
    max_length: int | None = setting(None, "default 128 (paper), 32 for the embedded default")
    epochs: float | None = setting(
        None, "passes over the training data (1.8: 80%% of a second one); default 20 (10 for mnli, qqp), 1.8 embedded"
    )
    dtype: str | None = setting(
        None,
        "compute dtype of the model (float32 or bfloat16); what is trained, and its optimizer state, stay float32\n"
        "(default float32; bfloat16 for the embedded default)",
    )
    frozen_dtype: str | None = setting(
        None,
        "storage dtype of the frozen pretrained matrices (float32 or bfloat16; pst, lora); the adapted and\n"
        "masked kernels are formed in float32 from them (default float32; bfloat16 for the embedded default)",
    )
    max_steps: int | None = setting(None, "stop after this many steps (overrides --epochs)")
    max_eval_samples: int | None = setting(None, "evaluate on the first N rows of each dev split (quick checks)")
    seed: int = setting(43, "seed of the initial factors, the task head, dropout and the shuffle")
    num_devices: int | None = setting(None, "use the first N local devices (default all)")
    output_dir: str = setting("runs/glue", "default runs/glue-TASK-METHOD", default=None)
    data_dir: str | None = setting(None, "folder in the original GLUE layout (SST-2/train.tsv, SST-2/dev.tsv, ...)")
    train_file: str | None = setting(None, "CSV, TSV or JSON lines with the Hugging Face glue column names")
    validation_file: list[str] | None = setting(None, "one file, or two for mnli (matched, mismatched)", nargs="+")


def check_config(cfg: GlueConfig, num_devices: int) -> GlueTask:
    """Raises a one-line :class:`InputError` for any bad setting; returns the task. Loads nothing (of a local
    ``--model`` folder it reads ``config.json`` and lists the files)."""
    try:
        task = get_task(cfg.task)
    except ValueError as error:
        raise InputError(str(error)) from None
    check_run_settings(cfg)
    for name in ("batch_size", "eval_batch_size"):
        if getattr(cfg, name) < 1:
            raise InputError(f"--{name} must be a positive integer, got {getattr(cfg, name)}")
    for name in ("batch_size", "eval_batch_size"):
        if getattr(cfg, name) % num_devices:
            raise InputError(
                f"--{name} {getattr(cfg, name)} is not divisible by the {num_devices} devices; it is the global batch"
            )
    for name in ("epochs", "max_steps", "max_eval_samples", "max_length", "learning_rate"):
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise InputError(f"--{name} must be positive, got {value}")
    if cfg.data_dir is not None and (cfg.train_file or cfg.validation_file):
        raise InputError("give either --data_dir or --train_file/--validation_file, not both")
    if bool(cfg.train_file) != bool(cfg.validation_file):
        raise InputError("--train_file and --validation_file go together")
    if cfg.data_dir is not None and not Path(cfg.data_dir).is_dir():
        raise InputError(f"--data_dir {cfg.data_dir} does not exist")
    for path in [cfg.train_file, *(cfg.validation_file or [])]:
        if path and not Path(path).is_file():
            raise InputError(f"data file {path} does not exist")
    if cfg.model is not None and not Path(cfg.model).expanduser().exists() and looks_like_path(cfg.model):
        raise InputError(f"--model {cfg.model} does not exist (not a folder, and not a hub id)")
    if cfg.model is not None:
        try:
            check_model_folder(cfg.model)
        except ValueError as error:
            raise InputError(str(error)) from None
    return task


def resolve_recipe(cfg: GlueConfig, task: GlueTask, embedded: bool) -> GlueConfig:
    """Fills the settings left at ``None`` from the paper's recipe, or the embedded CPU recipe."""
    recipe = dict(EMBEDDED_RECIPE if embedded else PAPER_RECIPE)
    if not embedded:
        recipe["epochs"] = PAPER_EPOCHS.get(task.name, recipe["epochs"])
    filled = {k: v for k, v in recipe.items() if getattr(cfg, k) is None}
    return dataclasses.replace(cfg, **filled)


def saved_config(output_dir: str | Path) -> GlueConfig:
    """The :class:`GlueConfig` a run wrote to ``output_dir/config.json`` (keys it does not know are ignored)."""
    saved = json.loads((Path(output_dir) / "config.json").read_text())
    fields = {f.name for f in dataclasses.fields(GlueConfig)}
    return GlueConfig(**{k: v for k, v in saved.items() if k in fields})
