"""Where a run's time goes: wall seconds per phase (load, tokenise, compile, steps, evaluation, ...).

A phase is timed with ``with phases("name"):``. Phases nest, and the inner one's time is not counted in the
outer one (compiling inside ``steps`` counts as ``compile``), so the phases add up to the time measured.
``report()`` is what ``results.json`` stores under ``phases_s``; ``line()`` what a run prints at its end.

Example:
  >>> phases = Phases()
  >>> with phases("steps"):
  ...     with phases("compile"):
  ...         pass
  >>> sorted(phases.report())
  ['compile', 'other', 'steps', 'total']
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Phases:
    """Wall seconds per named phase of a run, from its creation (see the module docstring)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self._stack: list[str] = []
        self._since = self.started

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Times the block as phase ``name`` (added to earlier blocks of that name), pausing the enclosing phase."""
        self._switch()
        self._stack.append(name)
        self.seconds.setdefault(name, 0.0)
        try:
            yield
        finally:
            self._switch()
            self._stack.pop()

    def _switch(self) -> None:
        now = time.perf_counter()
        if self._stack:
            self.seconds[self._stack[-1]] += now - self._since
        self._since = now

    def report(self) -> dict[str, float]:
        """Seconds per phase in the order first entered, then ``other`` (time in no phase) and ``total``."""
        total = time.perf_counter() - self.started
        out = {name: round(seconds, 1) for name, seconds in self.seconds.items()}
        out["other"] = round(total - sum(self.seconds.values()), 1)
        out["total"] = round(total, 1)
        return out

    def line(self) -> str:
        """``report()`` as one line, e.g. ``time: load 9.1 s, compile 20.3 s, steps 190.2 s, ..., total 250.0 s``."""
        return "time: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.report().items())
