"""Teachers: one interface (:class:`~datagen.teachers.base.Teacher`), one sample shape out.

The registry maps ``teacher.name`` to its config dataclass; the teacher
classes are imported only when built, so heavy engines (llama.cpp, vLLM) and
the OpenAI client load only for the teacher in use. The config modules import
nothing heavy: ``import datagen`` never imports vllm.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from datagen.teachers.api import OpenAITeacherConfig
from datagen.teachers.base import PriceConfig, Teacher, TeacherFatalError
from datagen.teachers.cache import RequestCache
from datagen.teachers.local import LocalTeacherConfig
from datagen.teachers.replay import ReplayTeacherConfig
from datagen.teachers.vllm_engine import VLLMTeacherConfig

TEACHER_CONFIGS: dict[str, type] = {
    "local": LocalTeacherConfig,
    "openai": OpenAITeacherConfig,
    "vllm": VLLMTeacherConfig,
    "replay": ReplayTeacherConfig,
}
"""teacher.name -> config dataclass."""

TEACHER_CLASSES: dict[str, str] = {
    "local": "datagen.teachers.local:LocalTeacher",
    "openai": "datagen.teachers.api:OpenAITeacher",
    "vllm": "datagen.teachers.vllm_engine:VLLMTeacher",
    "replay": "datagen.teachers.replay:ReplayTeacher",
}
"""teacher.name -> "module:Class", imported lazily."""

GENERATE_BATCH_SIZES: dict[str, int] = {"local": 1, "openai": 64, "vllm": 1024, "replay": 1024}
"""Problems per generate batch when ``run.generate_batch_size`` is null: small for a
sequential CPU model (fine-grained resume), large enough to fill an API's concurrency
or a vLLM engine's batch."""


def default_cache_path(cfg: Any, run_dir: Path) -> Path:
    """``teacher.cache_path`` if set, else RUN_DIR/cache/requests.sqlite."""
    path = getattr(cfg, "cache_path", None)
    return Path(path) if path else Path(run_dir) / "cache" / "requests.sqlite"


def teacher_class(name: str) -> type[Teacher]:
    """The teacher class of ``teacher.name`` (imports its module)."""
    module, _, cls_name = TEACHER_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), cls_name)


def build_teacher(cfg: Any, run_dir: Path) -> Teacher:
    """Build the configured teacher with its request cache.

    Args:
        cfg: A teacher config dataclass from :data:`TEACHER_CONFIGS`.
        run_dir: The run directory (holds the default cache file).

    Returns:
        The teacher, ready to :meth:`~Teacher.generate`.
    """
    cls = teacher_class(cfg.name)
    cache = (
        RequestCache(default_cache_path(cfg, run_dir)) if getattr(cls, "uses_cache", True) else None
    )
    return cls(cfg, cache)


__all__ = [
    "GENERATE_BATCH_SIZES",
    "TEACHER_CLASSES",
    "TEACHER_CONFIGS",
    "PriceConfig",
    "RequestCache",
    "Teacher",
    "TeacherFatalError",
    "build_teacher",
    "teacher_class",
]
