"""What a train step costs: compiled memory, device and host peaks, bytes of a tree, robust step times.

Used by ``experiments.glue`` and ``experiments.nlg`` (recorded in ``results.json``, via :class:`StepTimer`)
and by ``experiments.benchmark``.
"""

import math
import resource
import statistics
import sys
from typing import Any

import jax


def tree_bytes(tree: Any) -> int:
    """Bytes held by the arrays (or ``jax.ShapeDtypeStruct``) of a pytree.

    Example:
      >>> tree_bytes({"a": jnp.zeros((2, 3), jnp.float32), "b": [jnp.zeros(4, jnp.bfloat16)]})
      32
    """
    return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def compiled_memory(compiled: Any) -> dict[str, int] | None:
    """Memory of a compiled executable (``jax.jit(f).lower(...).compile()``) from XLA's memory analysis.

    ``peak_bytes`` is what the executable needs live at once as XLA plans it: its arguments, outputs
    and temporaries, minus outputs written in place of donated arguments. ``None`` where the backend
    gives no analysis.
    """
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    out = {
        "argument_bytes": int(analysis.argument_size_in_bytes),
        "output_bytes": int(analysis.output_size_in_bytes),
        "alias_bytes": int(analysis.alias_size_in_bytes),
        "temp_bytes": int(analysis.temp_size_in_bytes),
    }
    out["peak_bytes"] = out["argument_bytes"] + out["output_bytes"] - out["alias_bytes"] + out["temp_bytes"]
    return out


def device_peak_bytes(device: Any = None) -> int | None:
    """The allocator's peak bytes in use on ``device`` (GPU/TPU); ``None`` where not reported (CPU)."""
    stats = (device or jax.local_devices()[0]).memory_stats()
    if not stats:
        return None
    return int(stats.get("peak_bytes_in_use", stats.get("bytes_in_use", 0))) or None


def host_peak_rss_bytes() -> int:
    """This process's peak resident memory (``ru_maxrss``; kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def median_step_time(durations: list[float], skip: set[int] = frozenset()) -> float | None:
    """Median of step durations, leaving out the indices in ``skip`` (steps that compiled)."""
    kept = [d for i, d in enumerate(durations) if i not in skip]
    return statistics.median(kept) if kept else None


class StepTimer:
    """Durations of a training loop's steps, which of them include compiling, and its widest batch."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.compiling: set[int] = set()  # indices of durations that include a compile: left out of the median
        self.widths: set[int] = set()
        self.largest: tuple[int, Any] | None = None  # (width, batch) of the widest batch

    def see(self, batch: dict[str, Any]) -> bool:
        """Notes ``batch``'s width (length bucket); returns whether it is new, i.e. its step compiles."""
        width = batch["input_ids"].shape[1]
        new = width not in self.widths
        self.widths.add(width)
        return new

    def add(self, seconds: float, batch: dict[str, Any], compiled: bool) -> None:
        """Records one step of ``seconds`` on ``batch``; ``compiled``: a compile happened within those seconds."""
        width = batch["input_ids"].shape[1]
        if self.largest is None or width > self.largest[0]:
            self.largest = (width, batch)
        if compiled:
            self.compiling.add(len(self.durations))
        self.durations.append(seconds)

    def cost(self, compiled: Any, device: Any) -> dict[str, Any]:
        """The ``cost`` record of ``results.json``; ``compiled`` is the step compiled at the widest batch (``None``
        when no step was timed)."""
        return {
            "median_step_s": median_step_time(self.durations, self.compiling),
            "steps_timed": len(self.durations) - len(self.compiling),
            "batch_widths": sorted(self.widths),
            "compiled_step_memory": None if compiled is None else compiled_memory(compiled),
            "compiled_at_width": None if self.largest is None else self.largest[0],
            "device_peak_bytes": device_peak_bytes(device),
            "host_peak_rss_bytes": host_peak_rss_bytes(),
        }
