"""The settings of a data-to-text run (:class:`NLGConfig`; the paper's recipe by default), checked before loading."""

import dataclasses
from pathlib import Path

from pst_jax.data.hub import check_model_folder, looks_like_path
from pst_jax.nlg.data import TASKS
from pst_jax.nlg.metrics import METRICS
from pst_jax.training.errors import InputError
from pst_jax.training.method_config import MethodConfig, check_run_settings
from pst_jax.training.processes import ProcessConfig
from pst_jax.training.run_folder import FolderConfig
from pst_jax.training.settings import setting

PAPER_MODEL = "gpt2-medium"
PAPER_WARMUP_STEPS = 500
PAPER_MAX_LENGTH = 512
#: The metrics the paper reports per task (as LoRA's evaluation scripts compute them).
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "e2e": ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"),
    "dart": ("BLEU", "METEOR", "TER"),
    "webnlg": ("BLEU", "METEOR", "TER"),
}


@dataclasses.dataclass
class NLGConfig(ProcessConfig, FolderConfig, MethodConfig):
    """Every setting of a data-to-text run; the defaults are the paper's recipe."""

    task: str = setting("e2e", f"one of {', '.join(TASKS)}")
    model: str = setting(
        PAPER_MODEL, "hub id or local folder of a Flax GPT-2, Llama, Mistral or Gemma (with its tokenizer)"
    )
    learning_rate: float = setting(1e-4, "peak learning rate")
    warmup_steps: int | None = setting(
        None, "linear warm-up, then linear decay to 0 (default 500, or a tenth of a run that is not longer)"
    )
    weight_decay: float = setting(0.0, "AdamW's decoupled weight decay")
    label_smoothing: float = setting(0.1, "label smoothing of the training loss (the validation loss has none)")
    batch_size: int = setting(8, "global, across devices")
    eval_batch_size: int = setting(8, "validation-loss batch, global across devices")
    max_length: int | None = setting(
        None, "tokens of a training row (prompt + reference) (default 512, or the model's positions if fewer)"
    )
    epochs: int = setting(5, "training epochs")
    max_steps: int | None = setting(None, "stop after this many steps (overrides --epochs)")
    max_eval_samples: int | None = setting(None, "validation loss on the first N inputs (quick checks)")
    num_beams: int = setting(10, "beam-search width")
    length_penalty: float = setting(0.8, "score / generated_length ** this")
    no_repeat_ngram_size: int = setting(4, "0: no ban")
    max_new_tokens: int = setting(64, "longest generated text, in tokens")
    generate_batch_size: int = setting(8, "inputs per beam-search batch")
    generate_split: str | None = setting(None, "validation or test (default: test where the data has it)")
    max_generate_samples: int | None = setting(None, "generate for the first N inputs only (quick checks)")
    metrics: tuple[str, ...] | None = setting(
        None,
        f"comma-separated, of {', '.join(METRICS)} (default: the task's)",
        type=lambda text: tuple(text.split(",")),
    )
    remat: bool = setting(
        False,
        "recompute each decoder layer in the backward pass instead of keeping its activations "
        "(Llama, Mistral, Gemma; the same result, less activation memory)",
        action="store_true",
    )
    seed: int = setting(110, "seed of the initial factors, dropout and the shuffle (LoRA's NLG seed)")
    num_devices: int | None = setting(None, "use the first N local devices (default all)")
    output_dir: str = setting("runs/nlg", "default runs/nlg-TASK-METHOD", default=None)
    data_dir: str | None = setting(
        None, "folder with the dataset's original files (E2E train.txt/valid.txt/test.txt, ...)"
    )
    train_file: str | None = setting(None, "a file in the dataset's original format")
    validation_file: str | None = setting(None, "the validation split, in the dataset's original format")
    test_file: str | None = setting(None, "the test split, in the dataset's original format")


def check_config(cfg: NLGConfig, num_devices: int) -> None:
    """Raises a one-line :class:`InputError` for any bad setting. Loads nothing (of a local ``--model`` folder
    it reads ``config.json`` and lists the files)."""
    if cfg.task not in TASKS:
        raise InputError(f"unknown task {cfg.task!r}; choose from {', '.join(TASKS)}")
    check_run_settings(cfg)
    positive = (
        "learning_rate",
        "batch_size",
        "eval_batch_size",
        "max_length",
        "epochs",
        "max_steps",
        "max_eval_samples",
        "num_beams",
        "max_new_tokens",
        "generate_batch_size",
        "max_generate_samples",
    )
    for name in positive:
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise InputError(f"--{name} must be positive, got {value}")
    for name in ("warmup_steps", "no_repeat_ngram_size", "weight_decay"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 0:
            raise InputError(f"--{name} must be >= 0, got {getattr(cfg, name)}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise InputError(f"--label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
    for name in ("batch_size", "eval_batch_size", "generate_batch_size"):
        if getattr(cfg, name) % num_devices:
            raise InputError(
                f"--{name} {getattr(cfg, name)} is not divisible by the {num_devices} devices; it is the global batch"
            )
    if cfg.max_length is not None:
        _check_prompt_room(cfg)
    if cfg.generate_split not in (None, "validation", "test"):
        raise InputError(f"--generate_split must be validation or test, got {cfg.generate_split!r}")
    unknown = sorted(set(cfg.metrics or ()) - set(METRICS))
    if unknown:
        raise InputError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
    if cfg.data_dir is not None and (cfg.train_file or cfg.validation_file or cfg.test_file):
        raise InputError("give either --data_dir or --train_file/--validation_file/--test_file, not both")
    if bool(cfg.train_file) != bool(cfg.validation_file):
        raise InputError("--train_file and --validation_file go together")
    if cfg.test_file and not cfg.train_file:
        raise InputError("--test_file needs --train_file and --validation_file")
    if cfg.data_dir is not None and not Path(cfg.data_dir).is_dir():
        raise InputError(f"--data_dir {cfg.data_dir} does not exist")
    for path in (cfg.train_file, cfg.validation_file, cfg.test_file):
        if path and not Path(path).is_file():
            raise InputError(f"data file {path} does not exist")
    if looks_like_path(cfg.model) and not Path(cfg.model).expanduser().exists():
        raise InputError(f"--model {cfg.model} does not exist (not a folder, and not a hub id)")
    try:
        check_model_folder(cfg.model)
    except ValueError as error:
        raise InputError(str(error)) from None


def _check_prompt_room(cfg: NLGConfig) -> None:
    if cfg.max_new_tokens >= cfg.max_length:
        raise InputError(
            f"--max_new_tokens {cfg.max_new_tokens} leaves no room for the prompt in --max_length {cfg.max_length}"
        )


def resolve_defaults(cfg: NLGConfig, total_steps: int, n_positions: int) -> tuple[NLGConfig, list[str]]:
    """Fills ``--warmup_steps`` and ``--max_length`` left unset, and checks them against the run and the model.

    Unset, they are the paper's 500 and 512, or what fits where the run is not longer than the warm-up (a
    tenth of the run) or the model has fewer positions (all of them), with a note saying so. Given
    explicitly, a value that does not fit is an :class:`InputError`, never changed.

    Returns:
      ``(config, notes)``: the config with both set, and one line per adjusted default.
    """
    notes, filled = [], {}
    if cfg.warmup_steps is None:
        filled["warmup_steps"] = PAPER_WARMUP_STEPS if PAPER_WARMUP_STEPS < total_steps else total_steps // 10
        if filled["warmup_steps"] != PAPER_WARMUP_STEPS:
            notes.append(
                f"--warmup_steps: the default {PAPER_WARMUP_STEPS} is not below the run's {total_steps} steps; "
                f"using {filled['warmup_steps']}"
            )
    elif cfg.warmup_steps >= total_steps:
        raise InputError(
            f"--warmup_steps {cfg.warmup_steps} is not below the run's {total_steps} steps; lower it (e.g. "
            f"--warmup_steps {total_steps // 10})"
        )
    if cfg.max_length is None:
        filled["max_length"] = min(PAPER_MAX_LENGTH, n_positions)
        if filled["max_length"] != PAPER_MAX_LENGTH:
            notes.append(
                f"--max_length: the default {PAPER_MAX_LENGTH} exceeds the model's {n_positions} positions; "
                f"using {n_positions}"
            )
    elif cfg.max_length > n_positions:
        raise InputError(f"--max_length {cfg.max_length} exceeds the model's {n_positions} positions; lower it")
    resolved = dataclasses.replace(cfg, **filled)
    _check_prompt_room(resolved)
    return resolved, notes
