"""Reloads a GLUE run's exported ``sparse_model`` with plain transformers and checks it.

    python -m experiments.glue_check runs/glue-sst2-pst

Prints the re-computed dev metrics next to those in ``results.json``, the sparsity of every
sparsified kernel, and the largest fraction of zeros outside them (embeddings, pooler, classifier).
"""

import argparse
import json
import sys

from pst_jax.glue.check import check_export
from pst_jax.training.errors import InputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="the output folder of a finished experiments.glue run")
    try:
        report = check_export(parser.parse_args(argv).output_dir)
    except InputError as error:  # not a finished run, or non-finite weights: one line, exit 2
        print(f"error: {error}", file=sys.stderr)
        return 2
    off_by = report.pop("pruned_vs_target")
    report["pruned_minus_target_entries"] = {"min": min(off_by.values()), "max": max(off_by.values())}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
