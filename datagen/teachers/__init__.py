"""Teachers: one interface (:class:`~datagen.teachers.base.Teacher`), one sample shape out.

The registry maps ``teacher.name`` to its config dataclass; the teacher
modules themselves are imported only when built, so heavy engines (llama.cpp,
vLLM) load only for the teacher in use.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from datagen.teachers.base import Teacher
from datagen.teachers.cache import RequestCache
from datagen.teachers.local import LocalTeacherConfig

TEACHER_CONFIGS: dict[str, type] = {"local": LocalTeacherConfig}
"""teacher.name -> config dataclass."""

TEACHER_CLASSES: dict[str, str] = {"local": "datagen.teachers.local:LocalTeacher"}
"""teacher.name -> "module:Class", imported lazily."""


def build_teacher(cfg: Any, run_dir: Path) -> Teacher:
    """Build the configured teacher with its request cache."""
    cache_path = getattr(cfg, "cache_path", None) or run_dir / "cache" / "requests.sqlite"
    module, _, cls_name = TEACHER_CLASSES[cfg.name].partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    return cls(cfg, RequestCache(cache_path))


__all__ = ["TEACHER_CONFIGS", "Teacher", "build_teacher"]
