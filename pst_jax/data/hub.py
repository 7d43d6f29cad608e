"""Where a task's model and data come from: the Hugging Face hub, its local cache, or a local folder.

Every task decides from these, before loading anything, whether the hub may be asked, whether a model id is
already cached, whether ``--model`` names a folder (so a missing one is an error at once), and whether that
folder holds what ``from_pretrained`` needs (:func:`check_model_folder`).
"""

import json
import os
import socket
import threading
from pathlib import Path

HUB_HOST = "huggingface.co"
_OFFLINE_VALUES = ("1", "true", "yes", "on")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _OFFLINE_VALUES


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub can be reached, in at most about ``timeout`` seconds.

    False at once where ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` is set (``1``, ``true``, ``yes``
    or ``on``). Otherwise it opens a TCP connection to ``huggingface.co:443`` (no HTTP request); name
    resolution is included in the time limit, so this never waits on a hanging resolver.

    Example:
      >>> hub_reachable(timeout=1.0)  # False offline or with HF_HUB_OFFLINE=1  # doctest: +SKIP
      False
    """
    if _env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE"):
        return False
    connected: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((HUB_HOST, 443), timeout=timeout):
                connected.append(True)
        except OSError:
            pass

    # socket's timeout does not cover DNS resolution: bound the whole attempt with a daemon thread.
    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(connected)


def hub_model_cached(model_id: str) -> bool:
    """Whether the hub model ``model_id`` is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model_id, "config.json"), str)


def looks_like_path(model: str) -> bool:
    """Whether ``--model`` is meant as a folder rather than a hub id (so a missing one is an error at once)."""
    return model.startswith((os.sep, ".", "~")) or model.count("/") > 1 or model.endswith("/")


#: Weights Hugging Face's Flax ``from_pretrained`` loads without ``from_pt=True``.
FLAX_WEIGHT_FILES = ("flax_model.msgpack", "flax_model.msgpack.index.json", "model.safetensors")
PYTORCH_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
#: A tokenizer's own files (one is enough): the fast tokenizer, or a slow one's vocabulary.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


def check_model_folder(model: str | Path, label: str | None = None) -> None:
    """Raises a one-line ``ValueError`` where the local folder ``model`` lacks what ``from_pretrained`` reads.

    A folder needs a ``config.json`` that parses and names its ``model_type`` (without one, ``AutoConfig``
    guesses the type from the folder's name: an empty folder ``empty_dir`` is an ``'mpt'`` model), Flax-loadable
    weights (:data:`FLAX_WEIGHT_FILES`) and a tokenizer (:data:`TOKENIZER_FILES`). Reads only ``config.json``;
    a ``model`` that is no local path (a hub id) passes.

    Args:
      model: ``--model``, a folder or a hub id.
      label: how the error names it (default ``"--model MODEL"``).

    Example:
      >>> check_model_folder("bert-base-uncased")  # a hub id: nothing to check here
    """
    folder = Path(model).expanduser()
    if not folder.exists():
        return
    label = label or f"--model {model}"
    fix = "pass a folder saved with save_pretrained (config.json, weights, tokenizer files)"
    if not folder.is_dir():
        raise ValueError(f"{label} is a file, not a folder; {fix}")
    if not (folder / "config.json").is_file():
        raise ValueError(f"{label} holds no config.json; {fix}")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except ValueError as error:  # bad JSON, or not UTF-8
        raise ValueError(f"{label}: config.json does not parse ({error}); {fix}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise ValueError(f"{label}: config.json names no model_type; {fix}")
    present = {path.name for path in folder.iterdir()}
    if not present & set(FLAX_WEIGHT_FILES):
        if present & set(PYTORCH_WEIGHT_FILES):
            raise ValueError(
                f"{label} holds PyTorch weights only ({', '.join(sorted(present & set(PYTORCH_WEIGHT_FILES)))}); "
                "save Flax ones: FlaxAutoModel.from_pretrained(FOLDER, from_pt=True).save_pretrained(FOLDER)"
            )
        raise ValueError(f"{label} holds no weights (flax_model.msgpack or model.safetensors); {fix}")
    if not present & set(TOKENIZER_FILES):
        raise ValueError(f"{label} holds no tokenizer ({', '.join(TOKENIZER_FILES[:3])}, ...); {fix}")
