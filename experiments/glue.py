"""GLUE with PST (or plain fine-tuning): ``python -m experiments.glue --task sst2``.

Without the model hub the default sst2 run uses the embedded pretrained MiniLM and Rotten Tomatoes
sentences (see README.md, "Quickstart", for its figures). The paper's setting on a GPU/TPU host:

    python -m experiments.glue --task sst2 --model bert-base-uncased --learning_rate 3e-5 --epochs 20 \\
        --max_length 128 --batch_size 32 --sparsity 0.9 --seed 43 --output_dir runs/sst2-pst90
"""

import argparse
import dataclasses
import json
import logging
import sys

from pst_jax.glue_run import METHODS, GlueConfig, InputError, run
from pst_jax.glue_tasks import TASKS


def parse_args(argv: list[str] | None = None) -> GlueConfig:
    defaults = GlueConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", default=defaults.task, help=f"one of {', '.join(TASKS)}")
    p.add_argument("--model", help="hub id or local folder of a Flax-loadable BERT/RoBERTa (default bert-base-uncased)")
    p.add_argument("--method", default=defaults.method, help=f"one of {', '.join(METHODS)}")
    p.add_argument("--sparsity", type=float, default=defaults.sparsity, help="final sparsity of each matrix")
    p.add_argument("--initial_sparsity", type=float, default=defaults.initial_sparsity)
    p.add_argument("--initial_warmup", type=float, default=defaults.initial_warmup, help="fraction of steps dense")
    p.add_argument("--final_warmup", type=float, default=defaults.final_warmup, help="fraction at final sparsity")
    p.add_argument("--weight_rank", type=int, default=defaults.weight_rank)
    p.add_argument("--mask_rank", type=int, default=defaults.mask_rank)
    p.add_argument("--freeze_head", action="store_true", help="train only the PST factors, as the reference code")
    p.add_argument("--learning_rate", type=float, help="default 3e-5 (paper), 2e-4 for the embedded default")
    p.add_argument("--batch_size", type=int, default=defaults.batch_size, help="global, across devices")
    p.add_argument("--eval_batch_size", type=int, default=defaults.eval_batch_size)
    p.add_argument("--max_length", type=int, help="default 128 (paper), 64 for the embedded default")
    p.add_argument("--epochs", type=int, help="default 20 (10 for mnli, qqp), 1 for the embedded default")
    p.add_argument("--max_steps", type=int, help="stop after this many steps (overrides --epochs)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--output_dir", default=None, help="default runs/glue-TASK-METHOD")
    p.add_argument("--data_dir", help="folder in the original GLUE layout (SST-2/train.tsv, SST-2/dev.tsv, ...)")
    p.add_argument("--train_file", help="CSV, TSV or JSON lines with the Hugging Face glue column names")
    p.add_argument("--validation_file", nargs="+", help="one file, or two for mnli (matched, mismatched)")
    p.add_argument("--num_devices", type=int, help="use the first N local devices (default all)")
    args = vars(p.parse_args(argv))  # every flag is named after its GlueConfig field
    args["train_head"] = not args.pop("freeze_head")
    args["output_dir"] = args["output_dir"] or f"runs/glue-{args['task']}-{args['method']}"
    return GlueConfig(**args)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    config = parse_args(argv)
    try:
        results = run(config)
    except InputError as error:  # bad input: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = {k: results[k] for k in ("task", "model", "method", "best", "measured_sparsity", "wall_time_s")}
    print(json.dumps(summary, indent=2))
    print(f"outputs in {dataclasses.asdict(config)['output_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
