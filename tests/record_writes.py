"""Runs a launcher and records every file it writes, renames or removes inside its ``--output_dir``.

    python -m tests.record_writes RECORD glue|nlg [FLAGS...]

An audit hook (``sys.addaudithook``: Python reports every ``open`` with its mode, every rename and removal)
collects the paths under ``--output_dir``, except ``checkpoints/`` (orbax's saves are collective: every process
writes its shards); they are written to ``RECORD``, one a line, when the launcher returns.
"""

import os
import sys
from pathlib import Path

WRITE_EVENTS = ("os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree")


def main(argv: list[str]) -> int:
    record, experiment, *flags = argv
    out = Path(flags[flags.index("--output_dir") + 1]).absolute()
    written: set[str] = set()

    def inside(path: object) -> str | None:
        if not isinstance(path, str | bytes | os.PathLike):
            return None
        full = Path(os.fsdecode(path)).absolute()
        if full.is_relative_to(out) and not full.is_relative_to(out / "checkpoints"):
            return str(full.relative_to(out))
        return None

    def hook(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[1], str) and any(c in args[1] for c in "wax+"):
            name = inside(args[0])
        elif event in WRITE_EVENTS:
            name = inside(args[0])
        else:
            return
        if name is not None:
            written.add(f"{event} {name}")

    sys.addaudithook(hook)
    if experiment == "glue":
        from experiments.glue import main as launch
    else:
        from experiments.nlg import main as launch
    code = launch(flags)
    Path(record).write_text("".join(line + "\n" for line in sorted(written)))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
