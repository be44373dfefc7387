"""Stage ``generate``: ask the teacher for ``generation.n`` samples per problem.

The teacher is built once per process and consults its request cache before
sending anything, so this stage never pays twice for the same sample.
"""

from __future__ import annotations

from typing import Any

from datagen import progress
from datagen.config import DatagenConfig
from datagen.records import Problem, Sample
from datagen.stages.base import Stage, StageContext, register_stage
from datagen.teachers import TEACHERS, build_teacher


def generate(batch: list[Problem], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """Return ``n`` samples per problem, grouped by problem in input order."""
    teacher = ctx.resource("teacher", lambda: build_teacher(cfg["teacher"], ctx.run_dir))
    sampling = cfg["generation"]
    seed = sampling.seed if sampling.seed is not None else cfg["run.seed"]
    before, hits, spent = teacher.requests_sent, teacher.cache_hits, teacher.cost_spent
    retries = getattr(teacher, "retries", 0)
    samples = teacher.generate(batch, sampling, seed)
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
    )
)
