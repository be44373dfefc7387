"""The stage registry: ``pipeline.stages`` names stages from this dict, in order."""

from __future__ import annotations

from datagen.stages.adaptive import generate_adaptive
from datagen.stages.base import Stage, StageContext
from datagen.stages.decontaminate import decontaminate
from datagen.stages.dedup import dedup, dedup_samples
from datagen.stages.emit import emit
from datagen.stages.filter import filter_samples
from datagen.stages.generate import generate, generate_stream, teacher_streams
from datagen.stages.load import load
from datagen.stages.verify import verify, verify_groups

STAGES: dict[str, Stage] = {
    s.name: s
    for s in [
        Stage("load", load, "none", "problem", ("source", "run.limit")),
        Stage(
            "decontaminate",
            decontaminate,
            "problem",
            "problem",
            ("decontam",),
            side_name="contaminated",
        ),
        Stage(
            "dedup",
            dedup,
            "problem",
            "problem",
            ("dedup",),
            needs_all_rows=True,
            side_name="duplicates",
        ),
        Stage(
            "generate",
            generate,
            "problem",
            "sample",
            ("teacher", "generation", "run.seed"),
            batch_size_key="generate_batch_size",
            stream=generate_stream,
            streams=teacher_streams,
        ),
        Stage(
            "generate_adaptive",
            generate_adaptive,
            "problem",
            "sample",
            ("teacher", "generation", "adaptive", "verifier", "filter", "run.seed"),
            batch_size_key="generate_batch_size",
        ),
        # Compares the samples of one prompt, so all of a prompt's samples in one batch.
        Stage(
            "dedup_samples",
            dedup_samples,
            "sample",
            "sample",
            ("dedup.samples",),
            needs_all_rows=True,
            side_name="duplicates",
        ),
        Stage("verify", verify, "sample", "sample", ("verifier",)),
        # Rank rules (best k per prompt) need every sample of a prompt in one batch.
        Stage(
            "verify_groups", verify_groups, "sample", "sample", ("verifier",), needs_all_rows=True
        ),
        Stage("filter", filter_samples, "sample", "sample", ("filter",)),
        Stage("emit", emit, "sample", "sample", ("output", "run.seed"), needs_all_rows=True),
    ]
}


def build_pipeline(names: list[str]) -> list[Stage]:
    """Look up ``pipeline.stages``; an unknown name fails naming the choices."""
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise ValueError(f"pipeline.stages: unknown stage(s) {unknown}; known: {sorted(STAGES)}")
    return [STAGES[n] for n in names]


__all__ = ["STAGES", "Stage", "StageContext", "build_pipeline"]
