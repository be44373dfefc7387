"""Stage ``load``: read the source into Problem records; malformed rows become rejects."""

from __future__ import annotations

from typing import Any

from datagen.records import Problem
from datagen.sources import read_problems
from datagen.stages.base import Stage, StageContext, register_stage


def load(batch: list[Any], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Problem]:
    """Read every row of ``source``; report the ones that cannot become a problem."""
    problems, rejects = read_problems(cfg["source"], cfg["source"].system_prompt, cfg["run.limit"])
    ctx.rejects.extend(rejects)
    return problems


register_stage(Stage("load", load, "none", "problem", ("source", "run.limit")))
