"""The stage contract: a function over a batch of records plus a declaration.

A stage function has the signature ``fn(batch, ctx) -> batch`` once its config
is bound with ``functools.partial``. It marks rows (``keep=False`` with a
``reject_reason``) instead of dropping them; the runner writes set-aside rows
to the stage's side output. Stages hold no global state: what they need
(a teacher, a model, an index) comes from :class:`StageContext`, built once
per process, which is what lets a Ray executor run the same functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


@dataclass(frozen=True)
class Stage:
    """Declaration of one stage: what it reads, writes and depends on."""

    name: str
    fn: Callable[..., list[Any]]
    """``fn(batch, ctx, *, cfg) -> batch``; ``cfg`` is the config sections it names."""
    consumes: str
    """Record kind in: ``"problem"`` or ``"sample"`` (``"none"`` for a source)."""
    produces: str
    """Record kind out."""
    config_keys: tuple[str, ...]
    """Top-level config sections that shape the output; they key the manifest hash."""
    needs_all_rows: bool = False
    """True for stages that compare rows with each other (dedup): one batch of everything."""
    side_name: str = "set_aside"
    """Folder of the rows the stage set aside (``duplicates``, ``contaminated``, ...)."""
    batch_size_key: str = "batch_size"
    """Which ``run`` field sets this stage's batch size (and resume granularity)."""
    stream: Callable[..., Iterator[list[Any]]] | None = None
    """``stream(records, ctx, *, cfg)`` yielding finished groups (all output rows of one
    input row, any order) over the stage's whole input: no batch barrier. The runner
    writes a shard every batch-size groups and resumes by the ``problem_id`` of the
    rows in finished shards. None: the stage runs batch by batch."""
    streams: Callable[[DatagenConfig], bool] | None = None
    """Whether this run uses ``stream`` (e.g. only teachers that keep a window full)."""
    description: str = ""
