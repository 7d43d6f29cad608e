"""GLUE with PST or a baseline: ``python -m experiments.glue --task sst2 [--method movement]``.

Without the model hub the default sst2 run uses the embedded pretrained MiniLM and Rotten Tomatoes
sentences (see README.md, "Quickstart", for its figures). The paper's setting on a GPU/TPU host:

    python -m experiments.glue --task sst2 --model bert-base-uncased --learning_rate 3e-5 --epochs 20 \\
        --max_length 128 --batch_size 32 --sparsity 0.9 --seed 43 --output_dir runs/sst2-pst90
"""

import argparse
import sys

from experiments.flags import add_method_flags, flag_adder, launch, method_fields
from pst_jax.glue.config import GlueConfig
from pst_jax.glue.run import run
from pst_jax.glue.tasks import TASKS


def add_config_flags(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Adds a flag for every :class:`GlueConfig` field (``--freeze_head`` for ``train_head``), except ``skip``."""
    defaults = GlueConfig()
    add = flag_adder(p, skip)
    add("task", default=defaults.task, help=f"one of {', '.join(TASKS)}")
    add("model", help="hub id or local folder of a Flax-loadable BERT/RoBERTa (default bert-base-uncased)")
    add_method_flags(add, defaults)
    add("learning_rate", type=float, help="default 3e-5 (paper), 5e-4 for the embedded default")
    add("batch_size", type=int, default=defaults.batch_size, help="global, across devices")
    add("eval_batch_size", type=int, default=defaults.eval_batch_size)
    add("max_length", type=int, help="default 128 (paper), 64 for the embedded default")
    add("epochs", type=int, help="default 20 (10 for mnli, qqp), 1 for the embedded default")
    add("max_steps", type=int, help="stop after this many steps (overrides --epochs)")
    add("max_eval_samples", type=int, help="evaluate on the first N rows of each dev split (quick checks)")
    add("seed", type=int, default=defaults.seed)
    add("output_dir", default=None, help="default runs/glue-TASK-METHOD")
    add("data_dir", help="folder in the original GLUE layout (SST-2/train.tsv, SST-2/dev.tsv, ...)")
    add("train_file", help="CSV, TSV or JSON lines with the Hugging Face glue column names")
    add("validation_file", nargs="+", help="one file, or two for mnli (matched, mismatched)")
    add("num_devices", type=int, help="use the first N local devices (default all)")


def config_from_args(args: dict) -> GlueConfig:
    """The :class:`GlueConfig` of parsed flags (every flag is named after its field)."""
    return GlueConfig(**method_fields(args))


def parse_args(argv: list[str] | None = None) -> GlueConfig:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    add_config_flags(p)
    args = vars(p.parse_args(argv))
    args["output_dir"] = args["output_dir"] or f"runs/glue-{args['task']}-{args['method']}"
    return config_from_args(args)


def main(argv: list[str] | None = None) -> int:
    keys = ("task", "model", "method", "best", "measured_sparsity", "wall_time_s")
    return launch(run, parse_args(argv), lambda results: {k: results[k] for k in keys})


if __name__ == "__main__":
    sys.exit(main())
