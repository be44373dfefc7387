"""Stage ``generate``: ask the teacher for ``generation.n`` samples per problem.

A teacher that keeps a sliding window of requests (``Teacher.continuous``)
runs the stage as one stream: :func:`generate_stream` hands it every
remaining problem at once and yields each problem's samples as they complete,
so the endpoint never waits for a batch's slowest request.

With a ``teachers:`` list, every teacher answers every problem of a batch with its
own sampling, and a problem's samples are grouped together (teacher by teacher, in
list order); such runs go batch by batch.

The teacher is built once per process and consults its request cache before
sending anything, so this stage never pays twice for the same sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from datagen import progress
from datagen.config import DatagenConfig, SamplingConfig
from datagen.records import Problem, Sample
from datagen.stages.base import Stage, StageContext, register_stage
from datagen.teachers import TEACHERS, build_teacher


def _teacher(ctx: StageContext, cfg: dict[str, Any]) -> Any:
    return ctx.resource("teacher", lambda: build_teacher(cfg["teacher"], ctx.run_dir))


def _teachers(ctx: StageContext, cfg: dict[str, Any]) -> list[tuple[Any, SamplingConfig]]:
    """Each teacher with its sampling: the ``teachers:`` list, else the one ``teacher``."""
    entries = cfg.get("teachers") or ()
    if not entries:
        return [(_teacher(ctx, cfg), cfg["generation"])]
    return [
        (
            ctx.resource(
                f"teacher:{e.label}", lambda e=e: build_teacher(e.config, ctx.run_dir, e.label)
            ),
            e.generation,
        )
        for e in entries
    ]


def _seed(cfg: dict[str, Any]) -> int:
    sampling = cfg["generation"]
    return sampling.seed if sampling.seed is not None else cfg["run.seed"]


def _window(teacher: Any) -> dict[str, float]:
    """The teacher's request-window sums (:class:`datagen.teachers.aio.Window`), if it keeps one."""
    totals = getattr(teacher, "window_totals", None)
    return totals() if callable(totals) else {}


def _count_window(ctx: StageContext, teacher: Any, before: dict[str, float], retries: int) -> None:
    for key, value in _window(teacher).items():
        ctx.count("generate", key, round(value - before.get(key, 0), 6))
    if hasattr(teacher, "retries"):
        ctx.count("generate", "retries", teacher.retries - retries)


def generate(batch: list[Problem], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """Return ``n`` samples per problem (per teacher), grouped by problem in input order."""
    by_problem: dict[str, list[Sample]] = {p.id: [] for p in batch}
    for teacher, sampling in _teachers(ctx, cfg):
        mark = _mark(teacher)
        samples = teacher.generate(batch, sampling, _seed(cfg))
        failed = sum(s.error is not None for s in samples)
        tokens = sum(s.completion_tokens for s in samples)
        _count_batch(ctx, teacher, mark, len(samples), failed, tokens)
        for s in samples:
            by_problem[s.problem_id].append(s)
    return [s for group in by_problem.values() for s in group]


def generate_table(table: pa.Table, ctx: StageContext, *, cfg: dict[str, Any]) -> pa.Table:
    """:func:`generate` over an Arrow batch: a teacher that reads its samples from a table
    (``generate_table``: replay) builds the output columns itself; any other goes
    through records."""
    pairs = _teachers(ctx, cfg)
    teacher, sampling = pairs[0]
    if len(pairs) != 1 or not callable(getattr(teacher, "generate_table", None)):
        problems = [Problem.from_row(r) for r in table.to_pylist()]
        rows = [s.to_row() for s in generate(problems, ctx, cfg=cfg)]
        return pa.Table.from_pylist(rows, schema=Sample.FEATURES.arrow_schema)
    mark = _mark(teacher)
    out = teacher.generate_table(table, sampling, _seed(cfg))
    failed = out.num_rows - out["error"].null_count
    tokens = int(pc.sum(out["completion_tokens"]).as_py() or 0)
    _count_batch(ctx, teacher, mark, out.num_rows, failed, tokens)
    return out


def _mark(teacher: Any) -> tuple[Any, ...]:
    """The teacher's counters before a batch (sent, cache hits, cost, retries, window)."""
    return (
        teacher.requests_sent,
        teacher.cache_hits,
        teacher.cost_spent,
        getattr(teacher, "retries", 0),
        _window(teacher),
    )


def _count_batch(
    ctx: StageContext, teacher: Any, mark: tuple[Any, ...], samples: int, failed: int, tokens: int
) -> None:
    before, hits, spent, retries, window = mark
    ctx.count("generate", "batches")
    ctx.count("generate", "batch_requests", samples)
    _count_window(ctx, teacher, window, retries)
    ctx.count("generate", "requests_sent", teacher.requests_sent - before)
    ctx.count("generate", "cache_hits", teacher.cache_hits - hits)
    ctx.count("generate", "cost_usd", round(teacher.cost_spent - spent, 6))
    ctx.count("generate", "failed", failed)
    progress.record(
        ctx,
        samples=samples,
        tokens=tokens,
        cost=teacher.cost_spent - spent,
        retries=getattr(teacher, "retries", 0) - retries,
        in_flight=getattr(teacher, "in_flight", 0),
    )


def generate_stream(
    problems: list[Problem], ctx: StageContext, *, cfg: dict[str, Any]
) -> Iterator[list[Sample]]:
    """Yield each problem's ``n`` samples once all are in (completion order)."""
    teacher = _teacher(ctx, cfg)
    before, hits, spent = teacher.requests_sent, teacher.cache_hits, teacher.cost_spent
    retries, window = getattr(teacher, "retries", 0), _window(teacher)
    try:
        for group in teacher.generate_stream(problems, cfg["generation"], _seed(cfg)):
            ctx.count("generate", "failed", sum(s.error is not None for s in group))
            yield group
    finally:  # also when the stream stops early (a fatal error, Ctrl-C)
        _count_window(ctx, teacher, window, retries)
        ctx.count("generate", "requests_sent", teacher.requests_sent - before)
        ctx.count("generate", "cache_hits", teacher.cache_hits - hits)
        ctx.count("generate", "cost_usd", round(teacher.cost_spent - spent, 6))


def stream_note(stats: dict[str, Any], config: DatagenConfig) -> str | None:
    """Say when a setting kept the teacher's request window from doing its job.

    Two cases, from the stage's own measures: batches (a stage that does not stream)
    too small to fill ``teacher.concurrency``; or a window set below the teacher's
    default that requests queued behind nearly all the time while the server never
    pushed back (no retry: no 429, no overload), so the client's limit set the pace.
    """
    concurrency = getattr(config.teacher, "concurrency", None)
    if not concurrency:
        return None
    batches = stats.get("batches", 0)
    if batches > 1 and stats["batch_requests"] / batches < concurrency:
        per_batch = stats["batch_requests"] / batches
        need = -(-concurrency // max(config.generation.n, 1))
        return (
            f"generate: batches averaged {per_batch:.0f} requests for teacher.concurrency="
            f"{concurrency} slots, so the window never filled; raise run.generate_batch_size "
            f"to at least {need}"
        )
    default = {f.name: f.default for f in fields(type(config.teacher))}.get("concurrency")
    busy, answered = stats.get("window_busy_s", 0.0), stats.get("window_answered", 0)
    if not isinstance(default, int) or concurrency >= default or busy <= 0:
        return None
    if answered < 4 * concurrency or stats.get("retries", 0):
        return None
    queued = stats["window_queued_s"] / busy
    if queued < 0.9:
        return None
    return (
        f"generate: teacher.concurrency={concurrency} (default {default}) set the pace: "
        f"requests waited for a slot {queued:.0%} of the stage, "
        f"{stats['window_in_flight_s'] / busy:.1f} in flight on average, "
        f"{stats['window_latency_s'] / answered:.2f} s each, and the server never pushed "
        "back (no retries); if it can take more, raise teacher.concurrency"
    )


def _backends(config: Any) -> list[str]:
    return [e.config.name for e in config.teachers] or [config.teacher.name]


def teacher_streams(config: Any) -> bool:
    """True when the one configured teacher keeps its window full over a whole stage
    (a ``teachers:`` list goes batch by batch: a problem's group spans teachers)."""
    if config.teachers:
        return False
    return bool(getattr(TEACHERS[config.teacher.name].teacher_cls, "continuous", False))


def teacher_batch_size(config: DatagenConfig) -> int:
    """Problems per generation batch when ``run.generate_batch_size`` is null (with several
    teachers, the smallest of their defaults: the finest resume granularity)."""
    return min(TEACHERS[name].default_batch_size for name in _backends(config))


def teacher_wants_gpu(config: DatagenConfig) -> bool:
    """True when a configured teacher runs its model on a GPU (vLLM)."""
    return any(TEACHERS[name].wants_gpu for name in _backends(config))


register_stage(
    Stage(
        "generate",
        generate,
        "problem",
        "sample",
        ("teacher", "teachers", "generation", "run.seed"),
        columnar=generate_table,
        batch_size_key="generate_batch_size",
        default_batch_size=teacher_batch_size,
        wants_gpu=teacher_wants_gpu,
        stream=generate_stream,
        streams=teacher_streams,
        summary_note=stream_note,
    )
)
