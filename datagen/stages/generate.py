"""Stage ``generate``: ask the teacher for ``generation.n`` samples per problem.

The teacher is built once per process and consults its request cache before
sending anything, so this stage never pays twice for the same sample.
"""

from __future__ import annotations

from typing import Any

from datagen import progress
from datagen.records import Problem, Sample
from datagen.stages.base import StageContext
from datagen.teachers import build_teacher


def generate(batch: list[Problem], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """Return ``n`` samples per problem, grouped by problem in input order."""
    teacher = ctx.resource("teacher", lambda: build_teacher(cfg["teacher"], ctx.run_dir))
    sampling = cfg["generation"]
    seed = sampling.seed if sampling.seed is not None else cfg["run.seed"]
    before, spent = teacher.requests_sent, teacher.cost_spent
    retries = getattr(teacher, "retries", 0)
    samples = teacher.generate(batch, sampling, seed)
    ctx.count("generate", "requests_sent", teacher.requests_sent - before)
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
