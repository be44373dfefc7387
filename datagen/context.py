"""What every stage gets: per-process resources and counters (the stage context).

Stages hold no global state: what they need (a teacher, a model, an index)
comes from :class:`StageContext`, built once per process, which is what lets a
Ray executor run the same stage functions. It sits below the plug-ins so that
verifier adapters and outputs can take one without importing the stages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datagen.config import DatagenConfig

logger = logging.getLogger(__name__)


@dataclass
class StageContext:
    """Per-process resources shared by stages (models, clients, indexes)."""

    config: DatagenConfig
    run_dir: Path
    resources: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-stage counters a stage may add to (merged into the summary). A row-wise
    stage keeps them additive (counts, sums), since a Ray run adds up per-actor
    counters with :func:`merge_stats`; ratios are computed from them afterwards."""
    rejects: list[dict[str, Any]] = field(default_factory=list)
    """Malformed input rows (file, line, reason, raw); the runner writes them out."""
    cpus: int | None = None
    """CPUs this process may keep busy (a Ray actor's ``run.ray_cpus_per_actor``), for
    worker pools sized "one per CPU"; None: every CPU it can use."""

    def resource(self, name: str, factory: Callable[[], Any]) -> Any:
        """Return the named resource, building it once on first use."""
        if name not in self.resources:
            logger.info("loading %s", name)
            self.resources[name] = factory()
        return self.resources[name]

    def count(self, stage: str, key: str, amount: float = 1) -> None:
        bucket = self.stats.setdefault(stage, {})
        bucket[key] = bucket.get(key, 0) + amount

    def close(self) -> None:
        for res in self.resources.values():
            close = getattr(res, "close", None)
            if callable(close):
                close()
        self.resources.clear()


def merge_stats(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """Add counters from another process (or batch) into ``into``, in place.

    Stage stats are additive by contract (counts and sums, nested dicts of them),
    which is what lets per-actor counters of a Ray run add up to the same totals
    as one local process. Anything that is not a number is overwritten.
    """
    for key, value in more.items():
        if isinstance(value, dict):
            merge_stats(into.setdefault(key, {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            total = into.get(key, 0) + value
            into[key] = round(total, 9) if isinstance(total, float) else total
        else:
            into[key] = value
    return into
