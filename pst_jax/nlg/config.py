"""The settings of a data-to-text run (:class:`NLGConfig`; the paper's recipe by default), checked before loading."""

import dataclasses
from pathlib import Path

import jax

from pst_jax.data.hub import looks_like_path
from pst_jax.nlg.data import TASKS
from pst_jax.nlg.metrics import METRICS
from pst_jax.training.errors import InputError
from pst_jax.training.method_config import MethodConfig, check_method_config

PAPER_MODEL = "gpt2-medium"
#: The metrics the paper reports per task (as LoRA's evaluation scripts compute them).
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "e2e": ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"),
    "dart": ("BLEU", "METEOR", "TER"),
    "webnlg": ("BLEU", "METEOR", "TER"),
}


@dataclasses.dataclass
class NLGConfig(MethodConfig):
    """Every setting of a data-to-text run; the defaults are the paper's recipe."""

    task: str = "e2e"
    model: str = PAPER_MODEL
    learning_rate: float = 1e-4
    warmup_steps: int = 500
    weight_decay: float = 0.0
    label_smoothing: float = 0.1
    batch_size: int = 8
    eval_batch_size: int = 8
    max_length: int = 512  # tokens of a training row: prompt, separator and reference
    epochs: int = 5
    max_steps: int | None = None
    max_eval_samples: int | None = None  # validation inputs for the loss; None: all
    num_beams: int = 10
    length_penalty: float = 0.8
    no_repeat_ngram_size: int = 4  # 0: no ban
    max_new_tokens: int = 64  # LoRA's --eval_len
    generate_batch_size: int = 8  # inputs per beam-search batch
    generate_split: str | None = None  # None: test where the data has it, else validation
    max_generate_samples: int | None = None  # None: every input of the split
    metrics: tuple[str, ...] | None = None  # None: the task's (TASK_METRICS)
    seed: int = 110  # LoRA's NLG seed
    num_devices: int | None = None  # None: all local devices
    output_dir: str = "runs/nlg"
    data_dir: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None


def check_config(cfg: NLGConfig, num_devices: int) -> None:
    """Raises a one-line :class:`InputError` for any bad setting. Loads nothing."""
    if cfg.task not in TASKS:
        raise InputError(f"unknown task {cfg.task!r}; choose from {', '.join(TASKS)}")
    try:
        check_method_config(cfg)
    except ValueError as error:
        raise InputError(str(error)) from None
    if cfg.num_devices is not None and not 1 <= cfg.num_devices <= jax.local_device_count():
        raise InputError(f"--num_devices must be in [1, {jax.local_device_count()}], got {cfg.num_devices}")
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
        if getattr(cfg, name) < 0:
            raise InputError(f"--{name} must be >= 0, got {getattr(cfg, name)}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise InputError(f"--label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
    for name in ("batch_size", "eval_batch_size", "generate_batch_size"):
        if getattr(cfg, name) % num_devices:
            raise InputError(
                f"--{name} {getattr(cfg, name)} is not divisible by the {num_devices} devices; it is the global batch"
            )
    if cfg.max_new_tokens >= cfg.max_length:
        raise InputError(
            f"--max_new_tokens {cfg.max_new_tokens} leaves no room for the prompt in --max_length {cfg.max_length}"
        )
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
