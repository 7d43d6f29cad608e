"""Reloads a GLUE run's exported ``sparse_model`` with plain transformers and checks it.

    python -m experiments.glue_check runs/glue-sst2-pst

Prints the re-computed dev metrics next to those in ``results.json``, the sparsity of every
sparsified kernel, and the largest fraction of zeros outside them (embeddings, pooler, classifier).
"""

import argparse
import json

from pst_jax.glue.check import check_export


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir")
    report = check_export(parser.parse_args().output_dir)
    off_by = report.pop("pruned_vs_target")
    report["pruned_minus_target_entries"] = {"min": min(off_by.values()), "max": max(off_by.values())}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
