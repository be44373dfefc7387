"""Stage ``filter``: set aside samples that are cut off, too long, unanswered or looping.

Failing verification is not a reason to set a sample aside (negatives are
training data too); only samples unfit for any output are marked here.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from datagen.config import FilterConfig
from datagen.records import Sample
from datagen.stages.base import Stage, StageContext, register_stage
from verifiers.types import is_no_answer


def repeated_ngram_fraction(text: str, n: int = 8) -> float:
    """Share of word n-grams taken by the most frequent one (high = degenerate loop)."""
    words = text.split()
    if len(words) < 4 * n:
        return 0.0
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    top = grams.most_common(1)[0][1]
    return top * n / len(words)


def has_answer(sample: Sample) -> bool:
    """True when the verifier found something to grade (or did not need to)."""
    if any(is_no_answer(verdict.details) for verdict in sample.verdicts):
        return False
    return bool(sample.content.strip())


def reject_reason(sample: Sample, cfg: FilterConfig) -> str | None:
    """The first rule a sample breaks, or None."""
    if cfg.drop_truncated and sample.truncated:
        return "truncated: hit max_tokens"
    if (
        cfg.max_completion_tokens is not None
        and sample.completion_tokens > cfg.max_completion_tokens
    ):
        return f"too long: {sample.completion_tokens} > {cfg.max_completion_tokens} tokens"
    if cfg.require_answer and not has_answer(sample):
        return "format: no final answer"
    text = (sample.reasoning or "") + "\n" + sample.content
    if repeated_ngram_fraction(text) > cfg.max_repeated_ngram_fraction:
        return "repetition: one 8-gram dominates the text"
    return None


def filter_samples(batch: list[Sample], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """Mark (never drop) samples that break a rule in ``filter``."""
    fcfg: FilterConfig = cfg["filter"]
    for sample in batch:
        reason = reject_reason(sample, fcfg)
        if reason is not None:
            sample.keep = False
            sample.reject_reason = reason
            ctx.count("filter", reason.split(":")[0])
    return batch


register_stage(Stage("filter", filter_samples, "sample", "sample", ("filter",)))
