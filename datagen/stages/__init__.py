"""The stages: each module declares its own with :func:`register_stage`.

Importing this package imports the built-in stage modules, so :data:`STAGES`
holds every built-in stage; a plug-in stage is one more module (or test) that
calls :func:`register_stage`. ``pipeline.stages`` names stages from it, in order.
"""

from __future__ import annotations

from datagen.stages import (  # noqa: F401  (each module registers its stages)
    adaptive,
    decontaminate,
    dedup,
    emit,
    filter,
    generate,
    load,
    student,
    verify,
)
from datagen.stages.base import STAGES, Stage, StageContext, register_stage


def build_pipeline(names: list[str]) -> list[Stage]:
    """Look up ``pipeline.stages``; an unknown name fails naming the choices."""
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise ValueError(f"pipeline.stages: unknown stage(s) {unknown}; known: {sorted(STAGES)}")
    return [STAGES[n] for n in names]


__all__ = ["STAGES", "Stage", "StageContext", "build_pipeline", "register_stage"]
