"""Stage ``load``: read the source into Problem records; malformed rows become rejects."""

from __future__ import annotations

from typing import Any

from datagen.records import Problem
from datagen.sources import read_source
from datagen.stages.base import Stage, StageContext, register_stage

_CONFLICT_EXAMPLES = 5


def load(batch: list[Any], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Problem]:
    """Read every row of ``source``; report the ones that cannot become a problem."""
    read = read_source(cfg["source"], cfg["source"].system_prompt, cfg["run.limit"])
    ctx.rejects.extend(read.rejects)
    if read.id_conflicts:  # kept (ids are content hashes), but reported
        ctx.count("load", "id_conflicts", len(read.id_conflicts))
        ctx.stats["load"]["id_conflict_examples"] = read.id_conflicts[:_CONFLICT_EXAMPLES]
    return read.problems


register_stage(Stage("load", load, "none", "problem", ("source", "run.limit")))
