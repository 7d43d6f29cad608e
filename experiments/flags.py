"""What the launchers share: running a config with one-line errors (the flags come from the configs' fields,
:mod:`pst_jax.training.settings`)."""

import json
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from pst_jax.training.errors import Diverged, InputError, Interrupted
from pst_jax.training.processes import initialize, is_writer


def launch(
    run: Callable[[Any], dict[str, Any]], config: Any, summary: Callable[[dict[str, Any]], dict[str, Any]]
) -> int:
    """Runs ``config``; prints ``summary(results)`` as JSON, or one ``error:`` line: bad input (exit code 2),
    divergence (1), SIGTERM or SIGINT (128 + the signal's number; during training a checkpoint is saved first)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # outside training: stop where it is
    try:
        initialize(config)  # the other processes of a multi-process run, before jax is asked for devices
        results = run(config)
    except InputError as error:  # bad input: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Diverged as error:  # a non-finite loss: one line, no metric reported as a result
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Interrupted as error:  # during training: the step's checkpoint is saved
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:  # before or after training: what is on disk is kept, a rerun resumes
        print(f"error: interrupted; rerun the same command to resume ({config.output_dir})", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if is_writer():
        print(json.dumps(summary(results), indent=2))
        print(f"outputs in {config.output_dir}")
    return 0


def _raise_interrupt(number: int, frame: object) -> None:
    raise KeyboardInterrupt
