"""Stage ``generate``: ask the teacher for ``generation.n`` samples per problem.

A teacher that keeps a sliding window of requests (``Teacher.continuous``)
runs the stage as one stream: :func:`generate_stream` hands it every
remaining problem at once and yields each problem's samples as they complete,
so the endpoint never waits for a batch's slowest request.

The teacher is built once per process and consults its request cache before
sending anything, so this stage never pays twice for the same sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from datagen import progress
from datagen.config import DatagenConfig
from datagen.records import Problem, Sample
from datagen.stages.base import Stage, StageContext, register_stage
from datagen.teachers import TEACHERS, build_teacher


def _teacher(ctx: StageContext, cfg: dict[str, Any]) -> Any:
    return ctx.resource("teacher", lambda: build_teacher(cfg["teacher"], ctx.run_dir))


def _seed(cfg: dict[str, Any]) -> int:
    sampling = cfg["generation"]
    return sampling.seed if sampling.seed is not None else cfg["run.seed"]


def generate(batch: list[Problem], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """Return ``n`` samples per problem, grouped by problem in input order."""
    teacher = _teacher(ctx, cfg)
    before, hits, spent = teacher.requests_sent, teacher.cache_hits, teacher.cost_spent
    retries = getattr(teacher, "retries", 0)
    samples = teacher.generate(batch, cfg["generation"], _seed(cfg))
    ctx.count("generate", "requests_sent", teacher.requests_sent - before)
    ctx.count("generate", "cache_hits", teacher.cache_hits - hits)
    ctx.count("generate", "cost_usd", round(teacher.cost_spent - spent, 6))
    ctx.count("generate", "failed", sum(s.error is not None for s in samples))
    progress.record(
        ctx,
        samples=len(samples),
        tokens=sum(s.completion_tokens for s in samples),
        cost=teacher.cost_spent - spent,
        retries=getattr(teacher, "retries", 0) - retries,
        in_flight=getattr(teacher, "in_flight", 0),
    )
    return samples


def generate_stream(
    problems: list[Problem], ctx: StageContext, *, cfg: dict[str, Any]
) -> Iterator[list[Sample]]:
    """Yield each problem's ``n`` samples once all are in (completion order)."""
    teacher = _teacher(ctx, cfg)
    before, hits, spent = teacher.requests_sent, teacher.cache_hits, teacher.cost_spent
    try:
        for group in teacher.generate_stream(problems, cfg["generation"], _seed(cfg)):
            ctx.count("generate", "failed", sum(s.error is not None for s in group))
            yield group
    finally:  # also when the stream stops early (a fatal error, Ctrl-C)
        ctx.count("generate", "requests_sent", teacher.requests_sent - before)
        ctx.count("generate", "cache_hits", teacher.cache_hits - hits)
        ctx.count("generate", "cost_usd", round(teacher.cost_spent - spent, 6))


def teacher_streams(config: Any) -> bool:
    """True when the configured teacher keeps its window full over a whole stage."""
    return bool(getattr(TEACHERS[config.teacher.name].teacher_cls, "continuous", False))


def teacher_batch_size(config: DatagenConfig) -> int:
    """Problems per generation batch when ``run.generate_batch_size`` is null."""
    return TEACHERS[config.teacher.name].default_batch_size


def teacher_wants_gpu(config: DatagenConfig) -> bool:
    """True when the configured teacher runs its model on a GPU (vLLM)."""
    return TEACHERS[config.teacher.name].wants_gpu


register_stage(
    Stage(
        "generate",
        generate,
        "problem",
        "sample",
        ("teacher", "generation", "run.seed"),
        batch_size_key="generate_batch_size",
        default_batch_size=teacher_batch_size,
        wants_gpu=teacher_wants_gpu,
        stream=generate_stream,
        streams=teacher_streams,
    )
)
