"""SIGTERM and SIGINT during training: recorded by a handler, acted on by the loop at the next step boundary.

Example::

    with StopRequests() as stop:
        for batch in batches:
            state = step(state, batch)
            if stop.requested:
                save(state)
                break
"""

import signal
from types import FrameType
from typing import Any

import jax
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
    """While entered, SIGTERM and SIGINT set :attr:`signal` instead of stopping the process; a second one
    raises ``KeyboardInterrupt`` (a user who insists is not kept waiting).

    With many processes SIGTERM is left to jax's preemption service: a SIGTERM reaching any process is
    agreed on by all of them at one step (:meth:`at`), so they stop and save together. SIGINT (Ctrl-C) stops
    only the process that receives it.
    """

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def at(self, step: int) -> bool:
        """Whether to stop after ``step`` (call it after every step, on every process)."""
        if self.signal is None and jax.process_count() > 1 and multihost_utils.reached_preemption_sync_point(step):
            self.signal = signal.SIGTERM
        return self.signal is not None

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signal.Signals(number)

    def __enter__(self) -> "StopRequests":
        for sig in SIGNALS if jax.process_count() == 1 else (signal.SIGINT,):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
