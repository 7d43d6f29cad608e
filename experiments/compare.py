"""Compare PST with its baselines over a grid of sparsities: ``python -m experiments.compare --task sst2``.

Runs ``experiments.glue`` for every method at every sparsity (methods that do not prune run once),
then writes ``comparison.md``, ``comparison.csv``, ``metric_vs_sparsity.png`` and
``trainable_parameters.png`` to ``--output_dir``. Rerunning skips the finished runs. Every other flag
of ``experiments.glue`` applies to each run, e.g. the quick check

    python -m experiments.compare --task sst2 --methods pst,movement,magnitude,dense \\
        --sparsities 0.5,0.75,0.9 --max_steps 20 --output_dir runs/compare-quick
"""

import argparse
import logging
import sys
from pathlib import Path

from experiments.huge_pages import restart_with_huge_pages

if __name__ == "__main__":  # before jax is imported below, which a restart would import twice
    restart_with_huge_pages()

from experiments.glue import add_config_flags, config_from_args
from pst_jax.glue.sweep import COLUMNS, sweep
from pst_jax.methods.registry import METHOD_NAMES
from pst_jax.training.errors import Diverged, InputError


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _rates(text: str) -> dict[str, float]:
    rates = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        name, _, value = item.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected METHOD=RATE, got {item!r}") from None
    return rates


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--methods", default="pst,movement,magnitude,dense", help=f"comma-separated, from {', '.join(METHOD_NAMES)}"
    )
    p.add_argument("--sparsities", type=_floats, default=[0.5, 0.75, 0.9], help="comma-separated, each in [0, 1)")
    p.add_argument(
        "--learning_rates",
        type=_rates,
        default={},
        help="per-method peak learning rates, e.g. dense=3e-5,movement=3e-5 (others: --learning_rate)",
    )
    p.add_argument("--output_dir", default=None, help="default runs/compare-TASK")
    add_config_flags(p, skip=("method", "sparsity", "output_dir"))
    args = vars(p.parse_args(argv))
    methods = [m.strip() for m in args.pop("methods").split(",") if m.strip()]
    sparsities = args.pop("sparsities")
    learning_rates = args.pop("learning_rates")
    output_dir = args.pop("output_dir") or f"runs/compare-{args['task']}"
    try:
        rows = sweep(config_from_args(args), methods, sparsities, output_dir, learning_rates=learning_rates)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Diverged as error:  # that cell's run stopped; a rerun resumes the sweep with it
        print(f"error: {error}", file=sys.stderr)
        return 1
    print((Path(output_dir) / "comparison.md").read_text())
    print(f"{len(rows)} runs; table ({', '.join(t for _, t in COLUMNS[:4])}, ...) and plots in {output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
