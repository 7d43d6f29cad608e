"""A training launcher restarts itself once so that glibc's malloc puts large buffers on transparent huge pages.

XLA's CPU runtime allocates a step's temporaries afresh at every step (about 360 MB for the GLUE default) and
glibc maps them with ``mmap``: the kernel faults them in 4 KiB at a time, some 90,000 page faults a step, spent as
system time on the cores that would compute. glibc 2.35+ has a tunable, ``glibc.malloc.hugetlb=1``, that asks for
transparent huge pages on those mappings (2 MiB a fault) where the kernel gives them on request (THP mode
``madvise``, the common default). Tunables are read when a process starts, so the launcher sets it and restarts
itself (``os.execve``: same process id, same arguments) before importing anything heavy.

Nothing changes where the tunable is already set (``GLIBC_TUNABLES=glibc.malloc.hugetlb=0`` turns it off), where
THP is ``always`` (nothing to ask) or ``never``, or off Linux/glibc. The computation is the same program either
way; only the host's memory mapping differs.

Example::

    if __name__ == "__main__":
        restart_with_huge_pages()
        sys.exit(main())
"""

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb"
THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def huge_page_env(environ: Mapping[str, str], glibc: tuple[int, ...], thp_mode: str | None) -> dict[str, str] | None:
    """The environment to restart with (``environ`` plus the tunable), or ``None`` to run as is.

    Example:
      >>> huge_page_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, (2, 36), "madvise")["GLIBC_TUNABLES"]
      'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'
      >>> huge_page_env({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, (2, 36), "madvise") is None
      True
    """
    tunables = environ.get("GLIBC_TUNABLES", "")
    if TUNABLE in tunables or thp_mode != "madvise" or glibc < (2, 35):
        return None
    return {**environ, "GLIBC_TUNABLES": ":".join(filter(None, (tunables, f"{TUNABLE}=1")))}


def glibc_version() -> tuple[int, ...]:
    """This process's glibc version, ``()`` where there is none (macOS, musl)."""
    try:
        found = re.search(r"glibc (\d+)\.(\d+)", os.confstr("CS_GNU_LIBC_VERSION") or "")
    except (ValueError, OSError, AttributeError):
        return ()
    return tuple(int(part) for part in found.groups()) if found else ()


def thp_mode(path: Path = THP_ENABLED) -> str | None:
    """The kernel's transparent huge page mode (``always``, ``madvise`` or ``never``), ``None`` if unreadable."""
    try:
        found = re.search(r"\[(\w+)\]", path.read_text())
    except OSError:
        return None
    return found.group(1) if found else None


def restart_with_huge_pages() -> None:
    """Restarts this process with the tunable set where it helps (see the module docstring); else returns."""
    env = huge_page_env(os.environ, glibc_version(), thp_mode())
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError:  # could not restart: run as is
        return
