"""What the launchers share: running a config with one-line errors (the flags come from the configs' fields,
:mod:`pst_jax.training.settings`)."""

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from pst_jax.training.errors import Diverged, InputError


def launch(
    run: Callable[[Any], dict[str, Any]], config: Any, summary: Callable[[dict[str, Any]], dict[str, Any]]
) -> int:
    """Runs ``config``; prints ``summary(results)`` as JSON, or bad input as one ``error:`` line (exit code 2)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        results = run(config)
    except InputError as error:  # bad input: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Diverged as error:  # a non-finite loss: one line, no metric reported as a result
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary(results), indent=2))
    print(f"outputs in {config.output_dir}")
    return 0
