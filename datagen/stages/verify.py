"""Stage ``verify``: judge every sample's final answer against its reference.

Adapter only: it hands strings to the configured verifier's ``verify_batch``
and stores each result as a :class:`~datagen.records.Verdict` on the sample.
"""

from __future__ import annotations

from typing import Any

from datagen.records import Sample, Verdict
from datagen.stages.base import StageContext
from datagen.verify_registry import VERIFIERS


def verify(batch: list[Sample], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """Attach one verdict per sample and set ``passed`` (None when unverifiable)."""
    vcfg = cfg["verifier"]
    entry = VERIFIERS[vcfg.name]
    results = entry.verify_batch(
        [s.content for s in batch], [s.reference for s in batch], vcfg.options
    )
    for sample, res in zip(batch, results, strict=True):
        sample.verdicts.append(
            Verdict(
                verifier=res.verifier,
                verifier_version=res.version,
                passed=res.passed,
                score=res.score,
                details=res.details,
            )
        )
        sample.passed = res.passed
        outcome = {True: "passed", False: "failed", None: "unverifiable"}[res.passed]
        ctx.count("verify", outcome)
    return batch
