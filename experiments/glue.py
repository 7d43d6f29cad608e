"""GLUE with PST or a baseline: ``python -m experiments.glue --task sst2 [--method movement]``.

Without the model hub the default sst2 run uses the embedded pretrained MiniLM and Rotten Tomatoes
sentences (see README.md, "Quickstart", for its figures). The paper's setting on a GPU/TPU host:

    python -m experiments.glue --task sst2 --model bert-base-uncased --learning_rate 3e-5 --epochs 20 \\
        --max_length 128 --batch_size 32 --sparsity 0.9 --seed 43 --output_dir runs/sst2-pst90
"""

import argparse
import sys

from experiments.huge_pages import restart_with_huge_pages

if __name__ == "__main__":  # before jax is imported below, which a restart would import twice
    restart_with_huge_pages()

from experiments.flags import launch
from pst_jax.glue.config import GlueConfig
from pst_jax.glue.run import run
from pst_jax.training.settings import add_flags, from_flags


def add_config_flags(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Adds a flag for every :class:`GlueConfig` field (``--freeze_head`` for ``train_head``), except ``skip``."""
    add_flags(p, GlueConfig, skip)


def config_from_args(args: dict) -> GlueConfig:
    """The :class:`GlueConfig` of parsed flags."""
    return from_flags(GlueConfig, args)


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
