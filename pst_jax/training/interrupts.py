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

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
    """While entered, SIGTERM and SIGINT set :attr:`signal` instead of stopping the process; a second one
    raises ``KeyboardInterrupt`` (a user who insists is not kept waiting)."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signal.Signals(number)

    def __enter__(self) -> "StopRequests":
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
