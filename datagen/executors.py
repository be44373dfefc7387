"""How a row-wise stage function is applied to the runner's batches.

``LocalExecutor`` calls the stage in this process. ``RayExecutor``
(:mod:`datagen.ray_executor`) streams the batches through a stage-long pool of
Ray actors, each of which builds its own :class:`StageContext` (models,
clients, caches) once, so the same stage functions run across a cluster
without change. The runner keeps ownership of I/O either way: shards, the
manifest and resume work the same.

Both have the same shape: ``stage_begin(stage, cfg)``, then ``map(stage, cfg,
tables)`` (outputs in input order, computed as the caller asks) or the stage's
stream from ``streamer(stage)``, then ``stage_end()``; ``close()`` at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

import pyarrow as pa

from datagen.context import StageContext
from datagen.ray_executor import RayExecutor
from datagen.records import RECORD_TYPES
from datagen.stages.base import Stage

logger = logging.getLogger(__name__)


def apply_stage(stage: Stage, cfg: dict[str, Any], ctx: StageContext, table: pa.Table) -> pa.Table:
    """Rows in, records through the stage function, rows out (with the output schema).

    A stage with a ``columnar`` function gets the Arrow batch itself (no records).
    """
    in_type = RECORD_TYPES.get(stage.consumes)
    out_type = RECORD_TYPES[stage.produces]
    schema = out_type.FEATURES.arrow_schema
    if stage.columnar is not None and in_type is not None:
        in_schema = in_type.FEATURES.arrow_schema  # generate: problems in, samples out
        out = stage.columnar(table.select(in_schema.names).cast(in_schema), ctx, cfg=cfg)
        return out.select(schema.names).cast(schema)
    batch = [in_type.from_row(r) for r in table.to_pylist()] if in_type else []
    out = partial(stage.fn, cfg=cfg)(batch, ctx)
    return pa.Table.from_pylist([r.to_row() for r in out], schema=schema)


class LocalExecutor:
    """Run each batch in this process, sharing the runner's context."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx

    def stage_begin(self, stage: Stage, cfg: dict[str, Any]) -> None:
        """Nothing to set up: resources are built on first use in the runner's context."""

    def stage_end(self) -> None:
        """Resources stay for later stages (a teacher is built once per run)."""

    def run(self, stage: Stage, cfg: dict[str, Any], table: pa.Table) -> pa.Table:
        return apply_stage(stage, cfg, self.ctx, table)

    def map(
        self, stage: Stage, cfg: dict[str, Any], tables: Iterable[pa.Table]
    ) -> Iterator[pa.Table]:
        """Each table through the stage, one at a time, when the caller asks for it."""
        for table in tables:
            yield apply_stage(stage, cfg, self.ctx, table)

    def streamer(self, stage: Stage) -> Callable[..., Iterator[list[Any]]] | None:
        """The stage's own ``stream``, run in this process."""
        return stage.stream

    def close(self) -> None:
        self.ctx.close()


def build_executor(ctx: StageContext) -> LocalExecutor | RayExecutor:
    if ctx.config.run.executor == "ray":
        return RayExecutor(ctx, apply_stage)
    return LocalExecutor(ctx)
