"""Row-wise stages on Ray: one long-lived actor pool per stage, batches streamed through it.

At a stage's start the executor hands the stage to a pool of
``run.ray_concurrency`` actors (:class:`StageActor`), each asking Ray for
``run.ray_cpus_per_actor`` CPUs and, when the stage declares a GPU need for this
run (:meth:`Stage.gpu`), ``run.ray_gpus_per_actor`` GPUs. Each actor builds its
own :class:`StageContext` (teacher, verifier pools, indexes) once for the stage.
Actors of one resource shape are kept for later stages (their contexts are
closed and rebuilt between stages), so a run starts its processes once.

Batches: the runner hands over its batches as an iterator; each is cut into
``run.ray_batch_size`` row pieces spread over the actors (the least loaded
first), at most two pieces per actor in flight, and the outputs come back in
input order, so the runner writes each finished batch before the next counts
and a kill loses at most what was in flight.

Streams (``generate`` with an API teacher): the remaining input is dealt out
to the actors, each running the stage's ``stream`` over its share in a thread
and handing back finished groups when asked. A config section with a
``concurrency`` budget (``teacher.concurrency``) is split across the actors, so
the endpoint sees the total the config names, not that times the actor count.
Every actor commits responses to the run's request cache (SQLite in WAL mode,
which serialises writers across processes of one host), so a resumed run sends
nothing twice. WAL needs the processes on one host: see docs/ray.md.

Counters (``ctx.stats``) and rejects come back with each result and are added
into the runner's context, so the summary reads the same either way.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from datagen.config import DatagenConfig
from datagen.context import StageContext, merge_stats
from datagen.records import RECORD_TYPES
from datagen.stages.base import Stage

logger = logging.getLogger(__name__)

Apply = Callable[[Stage, dict[str, Any], StageContext, pa.Table], pa.Table]
IN_FLIGHT_PER_ACTOR = 2
"""Pieces queued per actor: one running, one waiting, so no actor idles between calls."""
WAIT_S = 1.0
"""Longest blocking wait in the driver (Ctrl-C is handled between waits)."""
TAKE_WAIT_S = 0.5
"""How long one ``take`` waits for a finished group before answering empty."""


def _wait_all(refs: list[Any]) -> list[Any]:
    """``refs`` once all are done, waiting in short steps: a wait without a timeout
    blocks in Ray's C++ core, where Ctrl-C is not seen until it returns."""
    import ray

    while True:
        _, waiting = ray.wait(refs, num_returns=len(refs), timeout=WAIT_S)
        if not waiting:
            return refs


def share_budgets(cfg: dict[str, Any], actors: int) -> list[dict[str, Any]]:
    """``cfg`` per actor, with each section's ``concurrency`` split so the total is kept.

    Actor ``i`` gets ``c // n`` plus one of the remainder; the list is as long as
    the smallest budget allows (never an actor with no slot).
    """
    budgets = {
        key: value.concurrency
        for key, value in cfg.items()
        if dataclasses.is_dataclass(value) and isinstance(getattr(value, "concurrency", None), int)
    }
    n = min([actors, *budgets.values()])
    out = []
    for i in range(n):
        mine = dict(cfg)
        for key, total in budgets.items():
            share = total // n + (i < total % n)
            mine[key] = dataclasses.replace(cfg[key], concurrency=share)
        out.append(mine)
    return out


def _compact(table: pa.Table, lo: int, size: int) -> pa.Table:
    """Rows ``lo:lo+size`` copied out: a slice of a memory-mapped dataset pickles its
    whole record batch (1,000 rows), 15x the bytes of a 64-row piece."""
    piece = table.slice(lo, size)
    return piece.take(pa.array(range(piece.num_rows), pa.int64()))


class StageActor:
    """One Ray actor process: the current stage and its context, built once per stage."""

    def __init__(self, config: DatagenConfig, run_dir: str, cpus: float, apply: Apply) -> None:
        self.config, self.run_dir, self.apply = config, run_dir, apply
        self.cpus = max(1, int(cpus))
        self.ctx = self._fresh()
        self.stage: Stage | None = None
        self.cfg: dict[str, Any] = {}
        self._feed: _Feed | None = None

    def _fresh(self) -> StageContext:
        return StageContext(config=self.config, run_dir=Path(self.run_dir), cpus=self.cpus)

    def begin(self, stage: Stage, cfg: dict[str, Any]) -> None:
        """Take up ``stage``: resources of the previous one are closed first."""
        self.end()
        self.stage, self.cfg = stage, cfg

    def end(self) -> None:
        if self._feed is not None:
            self._feed.stop()
            self._feed = None
        self.ctx.close()
        self.ctx = self._fresh()

    def run(self, table: pa.Table) -> tuple[pa.Table, dict[str, Any], list[dict[str, Any]]]:
        """One piece through the stage; its counters and rejects go back with it."""
        assert self.stage is not None
        out = self.apply(self.stage, self.cfg, self.ctx, table)
        stats, self.ctx.stats = self.ctx.stats, {}
        rejects, self.ctx.rejects = self.ctx.rejects, []
        return out, stats, rejects

    def stream_begin(self, rows: pa.Table) -> None:
        """Start the stage's stream over ``rows`` in a thread (groups wait for ``take``)."""
        assert self.stage is not None and self.stage.stream is not None
        in_type = RECORD_TYPES[self.stage.consumes]
        records = [in_type.from_row(r) for r in rows.to_pylist()]
        self._feed = _Feed(self.stage.stream(records, self.ctx, cfg=self.cfg))

    def take(self) -> tuple[list[list[Any]], dict[str, Any] | None]:
        """Groups finished since the last call; the counters once the stream is done."""
        assert self._feed is not None
        groups, done = self._feed.take(TAKE_WAIT_S)
        if not done:
            return groups, None
        stats, self.ctx.stats = self.ctx.stats, {}
        return groups, stats


class _Feed:
    """Runs a stream in a thread, keeping its finished groups until taken."""

    def __init__(self, stream: Iterator[list[Any]]) -> None:
        self.stream = stream
        self.groups: list[list[Any]] = []
        self.done = False
        self.error: BaseException | None = None
        self.stopping = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            for group in self.stream:
                with self.cond:
                    self.groups.append(group)
                    self.cond.notify()
                if self.stopping:
                    break
        except BaseException as exc:  # handed to the driver by take
            self.error = exc
        finally:
            close = getattr(self.stream, "close", None)
            if close is not None:
                close()
            with self.cond:
                self.done = True
                self.cond.notify()

    def take(self, wait_s: float) -> tuple[list[list[Any]], bool]:
        with self.cond:
            if not self.groups and not self.done:
                self.cond.wait(wait_s)
            groups, self.groups = self.groups, []
            done = self.done and not self.groups
        if done and self.error is not None:
            raise self.error
        return groups, done

    def stop(self) -> None:
        self.stopping = True
        self.thread.join(timeout=5)


class RayExecutor:
    """Feeds each stage's batches to a stage-long pool of Ray actors."""

    def __init__(self, ctx: StageContext, apply: Apply) -> None:
        import ray

        self.ctx, self.apply = ctx, apply
        self.run_cfg = ctx.config.run
        if not ray.is_initialized():
            ray.init(
                address=self.run_cfg.ray_address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        self.pools: dict[tuple[float, float], list[Any]] = {}
        self.actors: list[Any] = []
        """The current stage's actors (empty: the stage runs in this process)."""
        self.stage: Stage | None = None

    def actor_options(self, stage: Stage) -> dict[str, float]:
        """The resources each actor of ``stage`` asks Ray for."""
        gpus = self.run_cfg.ray_gpus_per_actor if stage.gpu(self.ctx.config) else 0.0
        return {"num_cpus": self.run_cfg.ray_cpus_per_actor, "num_gpus": gpus}

    @staticmethod
    def spreads(stage: Stage) -> bool:
        """Whether ``stage`` runs on actors: row-wise stages do; sources, sinks and stages
        that compare all rows run in the runner's process."""
        return not (stage.needs_all_rows or stage.consumes == "none" or stage.sink)

    def stage_begin(self, stage: Stage, cfg: dict[str, Any]) -> None:
        import ray

        self.stage, self.actors = stage, []
        if not self.spreads(stage):
            return
        options = self.actor_options(stage)
        shape = (options["num_cpus"], options["num_gpus"])
        pool = self.pools.get(shape)
        if pool is None:
            remote = ray.remote(StageActor).options(**options)
            cpus = options["num_cpus"]
            args = (self.ctx.config, str(self.ctx.run_dir), cpus, self.apply)
            pool = [remote.remote(*args) for _ in range(self.run_cfg.ray_concurrency)]
            self.pools[shape] = pool
        configs = share_budgets(cfg, len(pool))
        self.actors = pool[: len(configs)]
        ray.get([a.begin.remote(stage, c) for a, c in zip(self.actors, configs, strict=True)])

    def stage_end(self) -> None:
        import ray

        if self.actors:
            ray.get([a.end.remote() for a in self.actors])
        self.stage, self.actors = None, []

    def _collect(self, results: list[tuple[pa.Table, dict, list]]) -> list[pa.Table]:
        for _, stats, rejects in results:
            merge_stats(self.ctx.stats, stats)
            self.ctx.rejects.extend(rejects)
        return [t for t, _, _ in results]

    def map(
        self, stage: Stage, cfg: dict[str, Any], tables: Iterable[pa.Table]
    ) -> Iterator[pa.Table]:
        """Each table through the stage, outputs in input order; a bounded number in flight."""
        import ray

        if not self.actors:
            for table in tables:
                yield self.apply(stage, cfg, self.ctx, table)
            return
        schema = RECORD_TYPES[stage.produces].FEATURES.arrow_schema
        size, limit = self.run_cfg.ray_batch_size, IN_FLIGHT_PER_ACTOR * len(self.actors)
        load = [0] * len(self.actors)
        window: deque[list[tuple[Any, int]]] = deque()
        source = iter(tables)
        while True:
            while sum(load) < limit and (table := next(source, None)) is not None:
                pieces = []
                for lo in range(0, max(table.num_rows, 1), size):
                    i = min(range(len(load)), key=load.__getitem__)
                    pieces.append((self.actors[i].run.remote(_compact(table, lo, size)), i))
                    load[i] += 1
                window.append(pieces)
            if not window:
                return
            pieces = window.popleft()
            outs = self._collect(ray.get(_wait_all([ref for ref, _ in pieces])))
            for _, i in pieces:
                load[i] -= 1
            yield pa.concat_tables([t.cast(schema) for t in outs])

    def streamer(self, stage: Stage) -> Callable[..., Iterator[list[Any]]] | None:
        """What runs ``stage.stream`` here: the actors' shares of it, or None locally."""
        if not self.actors or stage.stream is None:
            return stage.stream
        return self._stream

    def _stream(
        self, records: list[Any], ctx: StageContext, *, cfg: dict[str, Any]
    ) -> Iterator[list[Any]]:
        """Deal ``records`` out to the actors and yield groups as any of them finishes one."""
        import ray

        assert self.stage is not None
        in_type = RECORD_TYPES[self.stage.consumes]
        schema = in_type.FEATURES.arrow_schema
        actors = self.actors[: max(1, min(len(self.actors), len(records)))]
        shares = [records[i :: len(actors)] for i in range(len(actors))]
        tables = [pa.Table.from_pylist([r.to_row() for r in s], schema=schema) for s in shares]
        ray.get([a.stream_begin.remote(t) for a, t in zip(actors, tables, strict=True)])
        pending = {a.take.remote(): a for a in actors}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
                if not ready:
                    continue
                actor = pending.pop(ready[0])
                groups, stats = ray.get(ready[0])
                if stats is None:
                    pending[actor.take.remote()] = actor
                else:
                    merge_stats(ctx.stats, stats)
                yield from groups
        finally:
            if pending:  # stopped early: the actors' streams end with the stage
                ray.wait(list(pending), num_returns=len(pending), timeout=TAKE_WAIT_S * 4)

    def close(self) -> None:
        """Stop every actor and wait until each is gone: none touches the run directory
        (or sends a request) once the run has returned."""
        import ray

        actors = [actor for pool in self.pools.values() for actor in pool]
        for actor in actors:
            ray.kill(actor)
        deadline = time.monotonic() + 30
        for actor in actors:
            while time.monotonic() < deadline:  # a call fails once Ray knows it is dead
                try:
                    ray.get(actor.end.remote(), timeout=10)
                except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                    break
                time.sleep(0.05)  # answered before the kill landed
        self.pools.clear()
        self.ctx.close()
