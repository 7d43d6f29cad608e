"""Where a task's model and data come from: the Hugging Face hub, its local cache, or a local folder.

Every task decides from these, before loading anything, whether the hub may be asked, whether a model id is
already cached, and whether ``--model`` names a folder (so a missing one is an error at once).
"""

import os
import socket
import threading

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
