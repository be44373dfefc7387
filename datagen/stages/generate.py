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

from datagen.records import Problem, Sample
from datagen.stages.base import StageContext
from datagen.teachers import build_teacher, teacher_class


def _teacher(ctx: StageContext, cfg: dict[str, Any]) -> Any:
    return ctx.resource("teacher", lambda: build_teacher(cfg["teacher"], ctx.run_dir))


def _seed(cfg: dict[str, Any]) -> int:
    sampling = cfg["generation"]
    return sampling.seed if sampling.seed is not None else cfg["run.seed"]


def generate(batch: list[Problem], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """Return ``n`` samples per problem, grouped by problem in input order."""
    teacher = _teacher(ctx, cfg)
    before, spent = teacher.requests_sent, teacher.cost_spent
    samples = teacher.generate(batch, cfg["generation"], _seed(cfg))
    ctx.count("generate", "requests_sent", teacher.requests_sent - before)
    ctx.count("generate", "cost_usd", round(teacher.cost_spent - spent, 6))
    ctx.count("generate", "failed", sum(s.error is not None for s in samples))
    return samples


def generate_stream(
    problems: list[Problem], ctx: StageContext, *, cfg: dict[str, Any]
) -> Iterator[list[Sample]]:
    """Yield each problem's ``n`` samples once all are in (completion order)."""
    teacher = _teacher(ctx, cfg)
    before, spent = teacher.requests_sent, teacher.cost_spent
    try:
        for group in teacher.generate_stream(problems, cfg["generation"], _seed(cfg)):
            ctx.count("generate", "failed", sum(s.error is not None for s in group))
            yield group
    finally:  # also when the stream stops early (a fatal error, Ctrl-C)
        ctx.count("generate", "requests_sent", teacher.requests_sent - before)
        ctx.count("generate", "cost_usd", round(teacher.cost_spent - spent, 6))


def teacher_streams(config: Any) -> bool:
    """True when the configured teacher keeps its window full over a whole stage."""
    return bool(getattr(teacher_class(config.teacher.name), "continuous", False))
