"""Say so when a rerun in a run directory changes the config that built its outputs.

A run directory resumes: a second ``python -m datagen`` there reuses what still
matches and rebuilds the rest, replacing ``outputs/``. That is what a user wants
after fixing a setting, and a surprise after pointing a new experiment at an old
folder. Before anything is replaced, :func:`warn_if_config_changed` compares the
new resolved config with the ``config.yaml`` the existing outputs were built from
and logs one WARNING naming every changed key; the old config is kept as
``config.previous.yaml``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

PREVIOUS = "config.previous.yaml"
"""Where the replaced run's config is kept, beside the new ``config.yaml``."""

IGNORED = ("run.progress",)
"""Keys that change nothing in the outputs."""


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted key -> leaf value.

    >>> flatten({"a": {"b": 1, "c": [2]}, "d": None})
    {'a.b': 1, 'a.c': [2], 'd': None}
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out |= flatten(value, dotted + ".")
        else:
            out[dotted] = value
    return out


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ, were added or were removed, sorted.

    >>> changed_keys({"teacher": {"name": "local"}}, {"teacher": {"name": "openai", "x": 1}})
    ['teacher.name', 'teacher.x']
    """
    a, b = flatten(old), flatten(new)
    keys = {k for k in a.keys() | b.keys() if a.get(k, ...) != b.get(k, ...)}
    return sorted(k for k in keys if k not in IGNORED)


def warn_if_config_changed(run_dir: Path, new: Mapping[str, Any], outputs: str) -> list[str]:
    """Log a WARNING if ``run_dir`` holds outputs built by a different config.

    Args:
        run_dir: The run directory (its ``config.yaml`` is the previous run's).
        new: The new resolved config, as a plain dict.
        outputs: ``output.dir``, the folder under ``run_dir`` that will be replaced.

    Returns:
        The changed keys (empty when nothing changed or nothing was built before).
    """
    previous, built = run_dir / "config.yaml", run_dir / outputs
    if not previous.exists() or not built.exists():
        return []
    try:
        old = yaml.safe_load(previous.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        old = {}
    # A group's ``name`` (which teacher, which verifier) first: it says the most.
    changed = sorted(changed_keys(old, new), key=lambda k: not k.endswith(".name"))
    if changed:
        shutil.copyfile(previous, run_dir / PREVIOUS)
        more = len(changed) - 12
        shown = ", ".join(changed[:12]) + (f" and {more} more" if more > 0 else "")
        logger.warning(
            "%s was built with a different config; this run replaces it (the old config is "
            "kept as %s). Changed: %s. Use another run directory (hydra.run.dir=...) to "
            "keep both.",
            built,
            PREVIOUS,
            shown,
        )
    return changed
