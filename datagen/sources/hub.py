"""Hub datasets as a source, with one clear line when they cannot be had.

Without a network (or with ``HF_HUB_OFFLINE=1``) ``datasets`` would retry the
Hub for half a minute and end in a traceback. Here the Hub is probed once
(a TCP connect, a few seconds at most); when it cannot be reached the
libraries are switched to offline mode, so a dataset already in the local
cache still loads, and anything else is one :class:`ConfigError`.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any
from urllib.parse import urlsplit

from datagen.config import ConfigError
from datagen.safetext import escape_text

logger = logging.getLogger(__name__)

_TRUE = ("1", "true", "yes", "on")


def offline_by_env() -> bool:
    """True when the user asked for offline mode (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``)."""
    return any(
        os.environ.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub endpoint (``HF_ENDPOINT``) opens within ``timeout``."""
    url = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def go_offline() -> None:
    """Make ``huggingface_hub`` and ``datasets`` use the local cache only, from now on."""
    import datasets
    import huggingface_hub.constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True


def load_hub_dataset(
    name: str,
    split: str,
    config: str | None = None,
    revision: str | None = None,
    *,
    local: bool = False,
) -> Any:
    """``datasets.load_dataset(name, config, split=..., revision=...)``, failing in one line.

    The result is an Arrow dataset (memory-mapped from the cache), so the source is
    read row by row without holding it in Python. ``local``: ``name`` is a folder laid
    out as a Hub dataset repo (no probe of the network).

    Raises:
        ConfigError: The dataset is not in the cache and the Hub cannot be reached,
            or the Hub refused it (unknown name or config, gated, no such split or revision).
    """
    import datasets

    offline = offline_by_env()
    if not local and not offline and not hub_reachable():
        logger.warning("the Hub cannot be reached: using the local dataset cache only")
        offline = True
    if offline and not local:
        go_offline()
    try:
        return datasets.load_dataset(name, config, split=split, revision=revision)
    except Exception as exc:
        first = escape_text(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        where = (
            "offline (no network or HF_HUB_OFFLINE=1) and it is not in the local cache"
            if offline and not local
            else f"{'datasets' if local else 'the Hub'} said: {type(exc).__name__}: {first}"
        )
        shown = ", ".join(
            f"{k} {v!r}" for k, v in (("config", config), ("revision", revision)) if v
        )
        raise ConfigError(
            f"source.path={name!r} (split {split!r}{', ' + shown if shown else ''}) could not "
            f"be loaded: {where}. Give a local .jsonl/.json/.parquet file or folder, or "
            "download the dataset once while online"
        ) from None
