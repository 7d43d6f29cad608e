"""What holds a compiled step's memory at its peak, read from XLA's own liveness dump.

XLA's memory analysis gives one number per executable. To see *what* sits in memory at the peak,
compile with XLA's dump options (:func:`dump_options`, or :func:`compile_with_breakdown` for both steps),
then :func:`peak_breakdown` reads the
``*-live-range.txt`` file XLA writes (the values live at the peak instruction of its schedule, with
their sizes) and the optimized HLO (each value's ``op_name``, i.e. the JAX name stack) and sums the
bytes per :data:`KINDS` entry. Backends that write no live-range dump (e.g. TPU) give ``None``.

The breakdown is the scheduler's view: it sums the HLO values live at the peak instruction, not the
heap's packing, and a buffer shared by several values (a loop's carried state, an in-place update) is
counted once per value. Its total is near the executable's ``peak_bytes`` (7,213 against 7,249 MiB for
PST's BERT-base step), not equal to it; read it for proportions.
"""

import collections
import re
import tempfile
from pathlib import Path
from typing import Any

import jax

# (kind, test on a value's op_name), first match wins. The train step's arguments keep their pytree
# path as op_name; values the model module computes carry its name in the JAX name stack.
KINDS: tuple[tuple[str, str], ...] = (
    ("trainable + optimizer state", r"^state\b"),
    ("frozen weights", r"^frozen\b"),
    ("batch", r"^batch\b"),
    ("backward: gradients, recomputed values", r"/transpose\("),
    ("model activations", r"/jvp\([A-Za-z_]\w*\)/"),
    # The forward outside the model: the method's weights, scores and masks, and the loss.
    ("outside the model: method, loss", r"/jvp\(\)/|/jvp\(jit\("),
)
OTHER = "other"

_LIVE = re.compile(r"\s+(\S+?)\{[^}]*\}: (\d+) bytes")
_DEF = re.compile(r'\s*(?:ROOT )?%(\S+) = .*?op_name="([^"]*)"')


def dump_options(directory: str | Path, module: str = "jit_train_step") -> dict[str, object]:
    """``compiler_options`` for ``lowered.compile(...)`` that make XLA dump ``module`` into ``directory``."""
    return {
        "xla_dump_to": str(directory),
        "xla_dump_hlo_as_text": True,
        "xla_dump_hlo_module_re": re.escape(module),
    }


def kind_of(op_name: str) -> str:
    """The :data:`KINDS` entry of a value's ``op_name`` (``"other"`` if none matches)."""
    for kind, pattern in KINDS:
        if re.search(pattern, op_name):
            return kind
    return OTHER


def peak_breakdown(directory: str | Path, module: str = "jit_train_step") -> dict[str, int] | None:
    """Bytes live at the peak of ``module``'s schedule per kind, plus ``"total"``; ``None`` without a dump.

    Args:
      directory: the ``xla_dump_to`` folder of one compile (see :func:`dump_options`).
      module: the jitted function's module name, ``jit_<function name>``.
    """
    directory = Path(directory)
    ranges = sorted(directory.glob(f"*.{module}.*-live-range.txt"))
    hlo = sorted(p for p in directory.glob(f"*.{module}.*after_optimizations.txt"))
    if not ranges or not hlo:
        return None
    lines = ranges[-1].read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if "(peak)" in line), None)
    if start is None:
        return None
    live: list[tuple[str, int]] = []
    for line in lines[start + 1 :]:
        m = _LIVE.match(line)
        if m is None:
            break
        live.append((m.group(1), int(m.group(2))))
    names = {name for name, _ in live}
    op_names: dict[str, str] = {}
    with hlo[-1].open() as f:
        for line in f:
            m = _DEF.match(line)
            if m and m.group(1) in names and m.group(1) not in op_names:
                op_names[m.group(1)] = m.group(2)
    out: dict[str, int] = collections.Counter()
    for name, size in live:
        out[kind_of(op_names.get(name, ""))] += size
    result = {kind: out.get(kind, 0) for kind, _ in KINDS} | {OTHER: out.get(OTHER, 0)}
    result["total"] = sum(size for _, size in live)
    return result


def compile_with_breakdown(lowered: Any, module: str = "jit_train_step") -> tuple[Any, dict[str, int] | None]:
    """``(lowered.compile(), peak_breakdown(...))``: one compile, dumped to a temporary folder.

    JAX's persistent compilation cache is bypassed for this compile: a cache hit would skip XLA and
    write no dump (the dump options are not part of the cache key).
    """
    cached = jax.config.jax_enable_compilation_cache
    with tempfile.TemporaryDirectory() as dump:
        jax.config.update("jax_enable_compilation_cache", False)
        try:
            compiled = lowered.compile(compiler_options=dump_options(dump, module))
        finally:
            jax.config.update("jax_enable_compilation_cache", cached)
        return compiled, peak_breakdown(dump, module)
