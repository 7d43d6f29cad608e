"""The run folder (``--output_dir``): one run at a time, its settings, its state, and atomic writes.

A folder's life cycle: **running** (``config.json``, a growing ``metrics.jsonl``, ``checkpoints/``; a lock
held), **killed** (the same, lock released: rerunning the same command resumes from the last checkpoint),
**diverged** (``results.json`` with ``"status": "diverged"``) and **finished** (``results.json`` with
``"status": "finished"``, written last: its presence means every other output is complete). The exported
model is written into a temporary folder and renamed into place, so a kill leaves the old model or the new.

Example::

    with RunFolder.open(Path("runs/x"), config, overwrite=False) as folder:
        if folder.results is not None:  # finished earlier: nothing to redo
            return folder.results
        ...
        folder.export(lambda path: model.save_pretrained(path, params=params))
"""

import dataclasses
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from pst_jax.training.errors import InputError
from pst_jax.training.processes import is_writer
from pst_jax.training.settings import setting

logger = logging.getLogger("pst_jax")

MODEL = "sparse_model"
# What the experiments write into a run folder: --overwrite removes these (the model only when replaced).
OUTPUTS = ("config.json", "metrics.jsonl", "results.json", "checkpoints", "predictions.jsonl", "predictions.txt")
# Settings that do not change a run's result: a resumed run may give other values.
NOT_COMPARED = frozenset(
    {"output_dir", "overwrite", "checkpoint_every_steps", "mesh", "coordinator_address", "num_processes", "process_id"}
)


@dataclasses.dataclass
class FolderConfig:
    """The settings of the run folder itself (not of what is trained)."""

    checkpoint_every_steps: int = setting(200, "save a checkpoint every N steps (and at every epoch end)")
    overwrite: bool = setting(False, "start over in a folder that holds a run", action="store_true")


def _write_atomically(path: Path, text: str) -> None:
    """Writes ``text`` to a temporary file renamed over ``path``: a kill leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    """Writes ``obj`` as strict JSON (a non-finite number is an error, never a ``NaN`` token), atomically."""
    _write_atomically(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """Writes ``records`` as strict JSON lines, atomically."""
    _write_atomically(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in records))


def read_json(path: Path) -> Any:
    """The JSON in ``path``; an :class:`InputError` naming the file when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path} cannot be read ({error}); pass --overwrite to start over") from None


def first_difference(saved: dict[str, Any], wanted: dict[str, Any]) -> tuple[str, Any, Any] | None:
    """``(setting, saved value, wanted value)`` of the first setting that differs, or ``None``."""
    wanted = json.loads(json.dumps(wanted))  # tuples and lists compare alike
    for key in sorted((set(saved) | set(wanted)) - NOT_COMPARED):
        if saved.get(key) != wanted.get(key):
            return key, saved.get(key), wanted.get(key)
    return None


def _lock(path: Path) -> int:
    """Takes the folder's lock (released when the process ends, however it ends); returns its descriptor."""
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise InputError(
            f"--output_dir {path} is in use by another run (pid {owner}); wait for it or choose another --output_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _recover_model(out: Path) -> None:
    """Undoes an export killed between its two renames: the old model goes back in place."""
    model, old = out / MODEL, out / (MODEL + ".old")
    if old.exists() and not model.exists():
        os.replace(old, model)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(out / (MODEL + ".tmp"), ignore_errors=True)


class RunFolder:
    """An opened, locked run folder (see the module docstring); made by :meth:`open`. In a multi-process run
    process 0 holds the lock and writes; the others share its decision and write nothing."""

    def __init__(self, path: Path, results: dict[str, Any] | None) -> None:
        self.path = path
        self.results = results  # a finished run's results.json, else None
        self.writer = is_writer()

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @classmethod
    @contextmanager
    def open(cls, path: Path, config: dict[str, Any], overwrite: bool) -> Iterator["RunFolder"]:
        """Creates and locks ``path``; starts a new run there, resumes the one there, or finds it finished.

        Raises:
          InputError: the folder is in use, holds a run with other settings (the first one is named), a
            diverged run, or outputs without a ``config.json``; or cannot be created.
        """
        if not is_writer():
            yield cls(path, _follow(path))
            return
        try:
            path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            _agree(_REFUSED)
            raise InputError(f"--output_dir {path} is under a file, or is one; choose a folder") from None
        except OSError as error:
            _agree(_REFUSED)
            raise InputError(f"cannot create --output_dir {path}: {error.strerror}; choose another folder") from None
        fd = None
        try:
            fd = _lock(path)
            _recover_model(path)
            if overwrite:
                for name in OUTPUTS:
                    _remove(path / name)
            results = _state(path, config)
        except (InputError, OSError):  # the other processes wait for the decision: they must hear of it
            _agree(_REFUSED)
            raise
        try:
            _agree(_RUN if results is None else _FINISHED)
            if results is not None:
                logger.warning("note: %s holds this run, finished; nothing to redo (--overwrite runs it again)", path)
            yield cls(path, results)
        finally:
            os.close(fd)

    def write_json(self, name: str, obj: Any) -> None:
        """Writes ``name`` atomically (:func:`write_json`), from process 0 only."""
        if self.writer:
            write_json(self.path / name, obj)

    def export(self, write: Callable[[Path], None]) -> None:
        """Calls ``write(folder)`` on a temporary folder, then renames it to ``sparse_model/`` over the old one
        (process 0 only)."""
        if not self.writer:
            return
        model, tmp, old = self.path / MODEL, self.path / (MODEL + ".tmp"), self.path / (MODEL + ".old")
        shutil.rmtree(tmp, ignore_errors=True)
        write(tmp)
        if model.exists():
            os.replace(model, old)
        os.replace(tmp, model)
        shutil.rmtree(old, ignore_errors=True)


_RUN, _FINISHED, _REFUSED = 0, 1, 2


def _agree(decision: int | None) -> int:
    """Process 0's decision about the folder, on every process (a no-op with one process)."""
    if jax.process_count() == 1:
        return decision
    return int(multihost_utils.broadcast_one_to_all(np.int32(-1 if decision is None else decision)))


def _follow(path: Path) -> dict[str, Any] | None:
    """On a process other than 0: process 0's decision (the finished run's results, or ``None`` to train)."""
    decision = _agree(None)
    if decision == _REFUSED:
        raise InputError(f"process 0 refused --output_dir {path}; its error says why")
    return read_json(path / "results.json") if decision == _FINISHED else None


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _state(path: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """Checks what ``path`` holds against ``config``; writes ``config.json`` for a new run. Returns a finished
    run's results, else ``None`` (a new run, or one to resume)."""
    config_path = path / "config.json"
    if not config_path.exists():
        found = [name for name in OUTPUTS if (path / name).exists()]
        if found:
            raise InputError(
                f"--output_dir {path} holds {found[0]} but no config.json (not a run of this version); "
                "pass --overwrite to start over, or choose another --output_dir"
            )
        write_json(config_path, config)
        return None
    results = read_json(path / "results.json") if (path / "results.json").exists() else None
    if results is not None and results.get("status") != "finished":
        step = results.get("diverged", {}).get("step")
        raise InputError(
            f"--output_dir {path} holds a run that {'diverged at step ' + str(step) if step else 'did not finish'}; "
            "change the settings (e.g. a lower --learning_rate) and pass --overwrite, or choose another --output_dir"
        )
    differs = first_difference(read_json(config_path), config)
    if differs is not None:
        key, saved, wanted = differs
        raise InputError(
            f"--output_dir {path} holds a run with {key} {saved!r}, not {wanted!r}; rerun with its settings to "
            "resume it, pass --overwrite to start over, or choose another --output_dir"
        )
    return results
