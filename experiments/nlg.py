"""GPT-2 with PST (or a baseline) on E2E, DART or WebNLG: ``python -m experiments.nlg --task e2e``.

Trains on the target text of each (input, reference) pair, generates by beam search on the exported
sparse model and scores the texts (BLEU, NIST, METEOR, ROUGE-L, CIDEr on E2E; BLEU, METEOR, TER on DART
and WebNLG). The defaults are the paper's recipe; on a GPU/TPU host with the hub reachable:

    python -m experiments.nlg --task e2e --model gpt2-medium --sparsity 0.9 --output_dir runs/e2e-pst90

Without the hub, give the data in its original files (``--data_dir``) and a local GPT-2 (``--model``).
"""

import argparse
import sys

from experiments.flags import add_method_flags, flag_adder, launch, method_fields
from pst_jax.nlg.config import NLGConfig
from pst_jax.nlg.data import TASKS
from pst_jax.nlg.metrics import METRICS
from pst_jax.nlg.run import run


def add_config_flags(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Adds a flag for every :class:`NLGConfig` field (``--freeze_head`` for ``train_head``), except ``skip``."""
    d = NLGConfig()
    add = flag_adder(p, skip)
    add("task", default=d.task, help=f"one of {', '.join(TASKS)}")
    add("model", default=d.model, help="hub id or local folder of a Flax-loadable GPT-2 (with its tokenizer)")
    add_method_flags(add, d)
    add("learning_rate", type=float, default=d.learning_rate)
    add("warmup_steps", type=int, default=d.warmup_steps, help="linear warm-up, then linear decay to 0")
    add("weight_decay", type=float, default=d.weight_decay)
    add("label_smoothing", type=float, default=d.label_smoothing)
    add("batch_size", type=int, default=d.batch_size, help="global, across devices")
    add("eval_batch_size", type=int, default=d.eval_batch_size)
    add("max_length", type=int, default=d.max_length, help="tokens of a training row (prompt + reference)")
    add("epochs", type=int, default=d.epochs)
    add("max_steps", type=int, help="stop after this many steps (overrides --epochs)")
    add("max_eval_samples", type=int, help="validation loss on the first N inputs (quick checks)")
    add("num_beams", type=int, default=d.num_beams)
    add("length_penalty", type=float, default=d.length_penalty, help="score / generated_length ** this")
    add("no_repeat_ngram_size", type=int, default=d.no_repeat_ngram_size, help="0: no ban")
    add("max_new_tokens", type=int, default=d.max_new_tokens, help="longest generated text, in tokens")
    add("generate_batch_size", type=int, default=d.generate_batch_size, help="inputs per beam-search batch")
    add("generate_split", help="validation or test (default: test where the data has it)")
    add("max_generate_samples", type=int, help="generate for the first N inputs only (quick checks)")
    add("metrics", type=lambda s: tuple(s.split(",")), help=f"comma-separated, of {', '.join(METRICS)}")
    add("seed", type=int, default=d.seed)
    add("output_dir", default=None, help="default runs/nlg-TASK-METHOD")
    add("data_dir", help="folder with the dataset's original files (E2E train.txt/valid.txt/test.txt, ...)")
    add("train_file", help="a file in the dataset's original format")
    add("validation_file")
    add("test_file")
    add("num_devices", type=int, help="use the first N local devices (default all)")


def parse_args(argv: list[str] | None = None) -> NLGConfig:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    add_config_flags(p)
    args = vars(p.parse_args(argv))
    args["output_dir"] = args["output_dir"] or f"runs/nlg-{args['task']}-{args['method']}"
    return NLGConfig(**method_fields(args))


def summary(results: dict) -> dict:
    keys = ("task", "model", "method", "initial_validation_loss", "final", "measured_sparsity", "wall_time_s")
    return {**{k: results[k] for k in keys}, "metrics": {k: v for k, v in results["metrics"].items() if k in METRICS}}


def main(argv: list[str] | None = None) -> int:
    return launch(run, parse_args(argv), summary)


if __name__ == "__main__":
    sys.exit(main())
