"""How a row-wise stage function is applied to one runner batch.

``LocalExecutor`` calls the stage in this process. ``RayExecutor`` hands the
batch to Ray Data's ``map_batches`` over a pool of actors, each of which builds
its own :class:`StageContext` (models, clients, caches) once, so the same stage
functions run across a cluster without change. The runner keeps ownership of
I/O either way: shards, the manifest and resume work the same.

Counters that stages add to ``ctx.stats`` inside Ray actors are sent, batch
by batch, to one small sink actor and added into the runner's context when the
stage's batch is done, so the summary reads the same totals either way.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from datagen.config import DatagenConfig
from datagen.context import StageContext, merge_stats
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
        out = stage.columnar(table.select(schema.names).cast(schema), ctx, cfg=cfg)
        return out.select(schema.names).cast(schema)
    batch = [in_type.from_row(r) for r in table.to_pylist()] if in_type else []
    out = partial(stage.fn, cfg=cfg)(batch, ctx)
    return pa.Table.from_pylist([r.to_row() for r in out], schema=schema)


class LocalExecutor:
    """Run each batch in this process, sharing the runner's context."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx

    def run(self, stage: Stage, cfg: dict[str, Any], table: pa.Table) -> pa.Table:
        return apply_stage(stage, cfg, self.ctx, table)

    def close(self) -> None:
        self.ctx.close()


class _StatsSink:
    """Collects the counters stage actors report (a Ray actor, one per executor)."""

    def __init__(self) -> None:
        self.stats: dict[str, dict[str, Any]] = {}

    def add(self, stats: dict[str, dict[str, Any]]) -> None:
        merge_stats(self.stats, stats)

    def take(self) -> dict[str, dict[str, Any]]:
        stats, self.stats = self.stats, {}
        return stats


class _StageActor:
    """A Ray actor holding one StageContext for the lifetime of a stage."""

    def __init__(
        self, stage: Stage, cfg: dict[str, Any], config: DatagenConfig, run_dir: str, sink: Any
    ) -> None:
        self.stage = stage
        self.cfg = cfg
        self.ctx = StageContext(config=config, run_dir=Path(run_dir))
        self.sink = sink

    def __call__(self, table: pa.Table) -> pa.Table:
        import ray

        self.ctx.stats.clear()  # report this batch's counters only
        out = apply_stage(self.stage, self.cfg, self.ctx, table)
        if self.ctx.stats:  # waited on, so the sink has them before the batch counts as done
            ray.get(self.sink.add.remote(self.ctx.stats))
        return out


class RayExecutor:
    """Spread each runner batch over Ray actors with ``map_batches`` (order preserved)."""

    def __init__(self, ctx: StageContext) -> None:
        import ray

        self.ctx = ctx
        self.run_cfg = ctx.config.run
        if not ray.is_initialized():
            ray.init(
                address=self.run_cfg.ray_address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        ray.data.DataContext.get_current().enable_progress_bars = False
        self.sink = ray.remote(num_cpus=0)(_StatsSink).remote()

    def run(self, stage: Stage, cfg: dict[str, Any], table: pa.Table) -> pa.Table:
        import ray

        if table.num_rows == 0 or stage.needs_all_rows:
            return apply_stage(stage, cfg, self.ctx, table)  # nothing to spread
        gpus = self.run_cfg.ray_gpus_per_actor if stage.gpu(self.ctx.config) else 0
        size = self.run_cfg.ray_batch_size
        blocks = [table.slice(i, size) for i in range(0, table.num_rows, size)]
        out = ray.data.from_arrow(blocks).map_batches(
            _StageActor,
            fn_constructor_kwargs={
                "stage": stage,
                "cfg": cfg,
                "config": self.ctx.config,
                "run_dir": str(self.ctx.run_dir),
                "sink": self.sink,
            },
            batch_format="pyarrow",
            batch_size=self.run_cfg.ray_batch_size,
            concurrency=self.run_cfg.ray_concurrency,
            num_gpus=gpus or None,
        )
        schema = RECORD_TYPES[stage.produces].FEATURES.arrow_schema
        tables = [t for t in ray.get(out.to_arrow_refs()) if t.num_rows]
        merge_stats(self.ctx.stats, ray.get(self.sink.take.remote()))
        return (
            pa.concat_tables([t.cast(schema) for t in tables]) if tables else schema.empty_table()
        )

    def close(self) -> None:
        self.ctx.close()


def build_executor(ctx: StageContext) -> LocalExecutor | RayExecutor:
    if ctx.config.run.executor == "ray":
        return RayExecutor(ctx)
    return LocalExecutor(ctx)
