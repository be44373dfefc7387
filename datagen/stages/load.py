"""Stage ``load``: read the sources into Problem records; malformed rows become rejects.

``sources`` (or the one ``source``) are read in list order into one pool, each row
tagged with its source's name, so one dedup and one decontamination see them all.
"""

from __future__ import annotations

from typing import Any

from datagen.records import Problem
from datagen.sources import read_sources
from datagen.stages.base import Stage, StageContext, register_stage

_CONFLICT_EXAMPLES = 5


def load(batch: list[Any], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Problem]:
    """Read every row of every source; report the ones that cannot become a problem."""
    sources = cfg["sources"] or [cfg["source"]]
    read = read_sources(sources, cfg["run.limit"])
    ctx.rejects.extend(read.rejects)
    if read.not_sampled:  # left out by a source's limit/fraction draw: counted, not rejects
        ctx.stats.setdefault("load", {})["not_sampled"] = read.not_sampled
    if read.id_conflicts:  # kept (ids are content hashes), but reported
        ctx.count("load", "id_conflicts", len(read.id_conflicts))
        ctx.stats["load"]["id_conflict_examples"] = read.id_conflicts[:_CONFLICT_EXAMPLES]
    return read.problems


register_stage(Stage("load", load, "none", "problem", ("source", "sources", "run.limit")))
