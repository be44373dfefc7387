"""SFT sets: one row per verified sample, in TRL's conversational ``messages`` format.

``sft_positive`` holds verified-correct samples, ``sft_negative`` verified
incorrect ones. A positive that was cut off at ``max_tokens`` is never used,
even if its partial text happened to pass; neither is a sample over the length
caps. ``output.sft_drop_unsolved`` / ``sft_drop_solved`` leave out prompts
whose pass rate is 0 or 1. Only the teachers' samples are rows (a student's,
``role="student"``, set pass rates in :mod:`datagen.output.student`), and
``output.sft_selection`` keeps all, the shortest or the k shortest usable
correct traces of each prompt (:mod:`datagen.output.selection`).
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
from datagen.output.selection import select_by_length, token_efficiency
from datagen.output.tokens import TokenCounter, over_length
from datagen.records import ROLE_STUDENT, Sample


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
    samples = [s for s in samples if s.role != ROLE_STUDENT]
    stats = prompt_stats(samples)
    left_out: Counter[str] = Counter()
    usable: list[Sample] = []
    for s in samples:
        if s.passed is not passed:
            continue
        reason = sft_reason_left_out(s, stats[s.problem_id].pass_rate, cfg, counter)
        if reason is not None:
            left_out[reason] += 1
        else:
            usable.append(s)
    extra: dict[str, Any] = {}
    if passed:
        usable, extra["selection"] = _select(usable, cfg, counter)
        left_out["not kept by length selection"] += extra["selection"]["dropped"]
        left_out = +left_out  # no zero counts
    rows: list[dict[str, Any]] = []
    for s in usable:
        rate = stats[s.problem_id].pass_rate
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
            "weight": sft_weight(rate, cfg.sft_weighting, cfg.paced_alpha, cfg.paced_beta),
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
        **extra,
    }


def _select(
    usable: list[Sample], cfg: OutputConfig, counter: TokenCounter
) -> tuple[list[Sample], dict[str, Any]]:
    """``output.sft_selection`` prompt by prompt; the kept ones stay in row order."""
    groups: dict[str, list[Sample]] = {}
    for s in usable:
        groups.setdefault(s.problem_id, []).append(s)
    kept_ids = {
        s.id
        for group in groups.values()
        for s in select_by_length(group, cfg.sft_selection, cfg.sft_selection_k, counter)
    }
    kept = [s for s in usable if s.id in kept_ids]
    stats = token_efficiency(
        [counter.response_tokens(s) for s in usable],
        [counter.response_tokens(s) for s in kept],
        len(groups),
    )
    return kept, {"policy": cfg.sft_selection, "dropped": len(usable) - len(kept), **stats}


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
