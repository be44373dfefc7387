"""SFT sets: one row per verified sample, in TRL's conversational ``messages`` format.

``sft_positive`` holds verified-correct samples, ``sft_negative`` verified
incorrect ones. A positive that was cut off at ``max_tokens`` is never used,
even if its partial text happened to pass; neither is a sample over the length
caps. ``output.sft_drop_unsolved`` / ``sft_drop_solved`` leave out prompts
whose pass rate is 0 or 1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import datasets

from datagen.config import OutputConfig
from datagen.output.difficulty import difficulty, prompt_stats, sft_weight
from datagen.output.formats import (
    OutputSpec,
    assistant_turn,
    check_format,
    register_output,
    sft_features,
    to_dataset,
    verifier_list,
)
from datagen.output.tokens import TokenCounter, over_length
from datagen.records import Sample


def is_truncated(sample: Sample) -> bool:
    """Cut off by ``max_tokens``: flagged by the teacher or finish reason ``length``."""
    return sample.truncated or sample.finish_reason == "length"


def sft_reason_left_out(
    sample: Sample, pass_rate: float | None, cfg: OutputConfig, counter: TokenCounter
) -> str | None:
    """Why a graded sample stays out of its SFT set, or None when it goes in."""
    if sample.passed is True and is_truncated(sample):
        return "truncated positive"
    if cfg.sft_drop_unsolved and pass_rate == 0.0:
        return "unsolved prompt"
    if cfg.sft_drop_solved and pass_rate == 1.0:
        return "solved prompt"
    side = over_length(sample, counter, cfg.max_prompt_tokens, cfg.max_response_tokens)
    return f"{side} over length cap" if side else None


def build_sft(
    samples: Sequence[Sample],
    passed: bool,
    cfg: OutputConfig | None = None,
    counter: TokenCounter | None = None,
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """SFT rows for the samples whose verdict equals ``passed``.

    Args:
        samples: Verified samples of any number of prompts (pass rates come from all of them).
        passed: True for ``sft_positive``, False for ``sft_negative``.
        cfg: Output options (default: :class:`OutputConfig` defaults).
        counter: Token counter (default: the teacher's counts).

    Returns:
        The dataset (schema :func:`~datagen.output.formats.sft_features`) and its build
        stats: rows, prompts, and samples left out by reason.
    """
    cfg = cfg or OutputConfig()
    counter = counter or TokenCounter()
    stats = prompt_stats(samples)
    left_out: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    for s in samples:
        if s.passed is not passed:
            continue
        rate = stats[s.problem_id].pass_rate
        reason = sft_reason_left_out(s, rate, cfg, counter)
        if reason is not None:
            left_out[reason] += 1
            continue
        row: dict[str, Any] = {
            "id": s.id,
            "problem_id": s.problem_id,
            "domain": s.domain,
            "source": s.source,
            "messages": [*s.messages, *assistant_turn(s, cfg.reasoning_in_content)],
            "reasoning": s.reasoning,
            "reference": s.reference,
            "passed": s.passed,
            "teacher": s.teacher,
            "model": s.model,
            "sample_index": s.sample_index,
            "verifiers": verifier_list([s]),
            "finish_reason": s.finish_reason,
            "prompt_tokens": counter.prompt_tokens(s),
            "response_tokens": counter.response_tokens(s),
            "pass_rate": rate,
            "graded": stats[s.problem_id].graded,
            "difficulty": difficulty(rate, cfg.difficulty_edges),
            "weight": sft_weight(rate, cfg.sft_weighting),
        }
        if not cfg.reasoning_column:
            del row["reasoning"]
        rows.append(row)
    ds = to_dataset(rows, sft_features(cfg.reasoning_column))
    check_format(ds.column_names, "sft")
    return ds, {
        "rows": len(ds),
        "prompts": len({r["problem_id"] for r in rows}),
        "left_out": dict(sorted(left_out.items())),
    }


register_output(
    OutputSpec(
        "sft_positive",
        "sft",
        "Teacher traces verified correct against the reference (conversational SFT).",
        lambda samples, cfg, seed, counter: build_sft(samples, True, cfg, counter),
        sft_features,
        summary_label="positives",
    )
)
register_output(
    OutputSpec(
        "sft_negative",
        "sft",
        "Teacher traces verified incorrect (for REDI/DPO negatives or analysis).",
        lambda samples, cfg, seed, counter: build_sft(samples, False, cfg, counter),
        sft_features,
        summary_label="negatives",
    )
)
