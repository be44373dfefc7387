"""Teachers: one interface (:class:`~datagen.teachers.base.Teacher`), one sample shape out.

Each teacher module declares itself with
:func:`~datagen.teachers.base.register_teacher` (config class, teacher class,
default batch size, GPU need); importing this package imports the built-in
ones, so :data:`TEACHERS` is complete. No teacher module imports a heavy engine
(llama.cpp, vLLM, the OpenAI client) at import time: building the teacher does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datagen.teachers import api, local, replay, vllm_engine  # noqa: F401  (they register)
from datagen.teachers.base import (
    TEACHERS,
    PriceConfig,
    Teacher,
    TeacherFatalError,
    TeacherSpec,
    register_teacher,
)
from datagen.teachers.cache import RequestCache


def default_cache_path(cfg: Any, run_dir: Path) -> Path:
    """``teacher.cache_path`` if set, else RUN_DIR/cache/requests.sqlite."""
    path = getattr(cfg, "cache_path", None)
    return Path(path) if path else Path(run_dir) / "cache" / "requests.sqlite"


def build_teacher(cfg: Any, run_dir: Path, label: str | None = None) -> Teacher:
    """Build the configured teacher with its request cache.

    Args:
        cfg: A teacher config dataclass (the ``config_cls`` of a declared teacher).
        run_dir: The run directory (holds the default cache file).
        label: A ``teachers:`` entry's label or the student's (None: the one teacher,
            whose samples keep the backend name and the ids they always had).

    Returns:
        The teacher, ready to :meth:`~Teacher.generate`.
    """
    spec = TEACHERS[cfg.name]
    cache = RequestCache(default_cache_path(cfg, run_dir)) if spec.uses_cache else None
    teacher = spec.teacher_cls(cfg, cache)
    teacher.label = label
    return teacher


__all__ = [
    "TEACHERS",
    "PriceConfig",
    "RequestCache",
    "Teacher",
    "TeacherFatalError",
    "TeacherSpec",
    "build_teacher",
    "register_teacher",
]
