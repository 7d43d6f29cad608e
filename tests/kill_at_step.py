"""Fault injection for the resume tests: a signal sent to this process once training has finished a step.

    python -m tests.kill_at_step STEP SIGNAL glue|nlg [FLAGS...]

runs ``experiments.glue`` (or ``experiments.nlg``) with ``FLAGS`` and sends ``SIGNAL`` (``SIGKILL``, ``SIGTERM``,
``SIGINT``) to itself right after the loss of step ``STEP`` is read, once the run's first checkpoint is on disk
(orbax saves in the background: a later one may be in flight).
In-process tests patch ``TrainLoop._finish`` with :func:`finish_then_signal`.
"""

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pst_jax.training import loop


def committed(checkpoints: Path) -> list[int]:
    """The steps of the complete checkpoints in ``checkpoints`` (orbax renames a finished one to its step)."""
    return sorted(int(p.name) for p in checkpoints.glob("*") if p.name.isdigit()) if checkpoints.is_dir() else []


def finish_then_signal(step: int, sig: signal.Signals, checkpoints: Path | None = None) -> Callable:
    """A ``TrainLoop._finish`` that sends ``sig`` to this process after step ``step``'s loss is read (and, with
    ``checkpoints``, once a complete checkpoint is there: waits up to a minute)."""
    finish = loop.TrainLoop._finish

    def _finish(self: loop.TrainLoop, pending: tuple, compiled: bool) -> None:
        finish(self, pending, compiled)
        if self.finished == step:
            deadline = time.monotonic() + 60
            while checkpoints is not None and not committed(checkpoints) and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(os.getpid(), sig)

    return _finish


def main(argv: list[str]) -> int:
    step, name, experiment, *flags = argv
    checkpoints = Path(flags[flags.index("--output_dir") + 1]) / "checkpoints"
    loop.TrainLoop._finish = finish_then_signal(int(step), signal.Signals[name], checkpoints)
    if experiment == "glue":
        from experiments.glue import main as launch
    else:
        from experiments.nlg import main as launch
    return launch(flags)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
