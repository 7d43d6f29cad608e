"""GPT-2, Llama, Mistral or Gemma with PST (or a baseline) on E2E, DART or WebNLG: ``python -m experiments.nlg``.

Trains on the target text of each (input, reference) pair, generates by beam search on the exported
sparse model and scores the texts (BLEU, NIST, METEOR, ROUGE-L, CIDEr on E2E; BLEU, METEOR, TER on DART
and WebNLG). The defaults are the paper's recipe; on a GPU/TPU host with the hub reachable:

    python -m experiments.nlg --task e2e --model gpt2-medium --sparsity 0.9 --output_dir runs/e2e-pst90

Without the hub, give the data in its original files (``--data_dir``) and a local model folder (``--model``;
``experiments.tiny_gpt2`` and ``experiments.tiny_decoder`` make small random ones).
"""

import argparse
import sys

from experiments.huge_pages import restart_with_huge_pages

if __name__ == "__main__":  # before jax is imported below, which a restart would import twice
    restart_with_huge_pages()

from experiments.flags import launch
from pst_jax.nlg.config import NLGConfig
from pst_jax.nlg.metrics import METRICS
from pst_jax.nlg.run import run
from pst_jax.training.settings import add_flags, from_flags


def parse_args(argv: list[str] | None = None) -> NLGConfig:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    add_flags(p, NLGConfig)
    args = vars(p.parse_args(argv))
    args["output_dir"] = args["output_dir"] or f"runs/nlg-{args['task']}-{args['method']}"
    return from_flags(NLGConfig, args)


def summary(results: dict) -> dict:
    keys = ("task", "model", "method", "initial_validation_loss", "final", "measured_sparsity", "wall_time_s")
    return {**{k: results[k] for k in keys}, "metrics": {k: v for k, v in results["metrics"].items() if k in METRICS}}


def main(argv: list[str] | None = None) -> int:
    return launch(run, parse_args(argv), summary)


if __name__ == "__main__":
    sys.exit(main())
