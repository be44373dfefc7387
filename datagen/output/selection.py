"""Length-aware choice among one prompt's verified-correct traces.

"Not All Correct Answers Are Equal" (distilling several teachers on the same
queries) and the overthinking / DLCoT papers find that among correct traces the
shorter ones teach as well or better and cost less to train on. These rules act
on the *usable verified-correct* traces of ONE prompt (the caller has already
left out truncated and over-length ones), so they plug into any per-prompt loop;
an incorrect trace can never be kept by them (they refuse one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datagen.output.tokens import TokenCounter
from datagen.records import Sample


def by_length(samples: Sequence[Sample], counter: TokenCounter) -> list[Sample]:
    """Shortest first by response tokens; ties by sample index, then id (seed-free)."""
    return sorted(samples, key=lambda s: (counter.response_tokens(s), s.sample_index, s.id))


def select_by_length(
    correct: Sequence[Sample], policy: str, k: int, counter: TokenCounter
) -> list[Sample]:
    """The traces of one prompt that ``output.sft_selection`` keeps.

    Args:
        correct: One prompt's usable verified-correct samples.
        policy: ``all``, ``shortest`` or ``k_shortest``.
        k: How many ``k_shortest`` keeps.
        counter: Counts response tokens (reasoning and answer).

    Returns:
        The kept samples, in the order they were given.

    Raises:
        ValueError: A sample is not verified correct, or the policy is unknown.

    >>> from datagen.records import Sample
    >>> rows = [Sample(str(i), "p", "math", [], "1", "t", "m", i, passed=True,
    ...                completion_tokens=t) for i, t in enumerate([30, 10, 20])]
    >>> [s.id for s in select_by_length(rows, "shortest", 1, TokenCounter())]
    ['1']
    >>> [s.id for s in select_by_length(rows, "k_shortest", 2, TokenCounter())]
    ['1', '2']
    """
    wrong = [s.id for s in correct if s.passed is not True]
    if wrong:
        raise ValueError(f"length selection got samples not verified correct: {wrong}")
    if policy == "all":
        return list(correct)
    if policy not in ("shortest", "k_shortest"):
        raise ValueError(f"unknown output.sft_selection {policy!r}")
    keep = {s.id for s in by_length(correct, counter)[: 1 if policy == "shortest" else k]}
    return [s for s in correct if s.id in keep]


def token_efficiency(
    candidates: Sequence[int], kept: Sequence[int], prompts: int
) -> dict[str, Any]:
    """What a length rule kept: counts and token sums only, so chunks of prompts add up
    (:func:`efficiency_ratios` turns them into means and the share saved).

    >>> token_efficiency([10, 30], [10], 1)["tokens_kept"]
    10
    """
    return {
        "prompts": prompts,
        "correct_traces": len(candidates),
        "kept_traces": len(kept),
        "tokens_correct": sum(candidates),
        "tokens_kept": sum(kept),
    }


def efficiency_ratios(stats: dict[str, Any]) -> dict[str, float | None]:
    """Mean tokens of all usable correct traces and of the kept ones, and the share saved.

    >>> efficiency_ratios(token_efficiency([10, 30], [10], 1))["tokens_saved_share"]
    0.75
    """
    total, kept = stats["tokens_correct"], stats["tokens_kept"]
    return {
        "mean_tokens_correct": round(total / stats["correct_traces"], 1)
        if stats["correct_traces"]
        else None,
        "mean_tokens_kept": round(kept / stats["kept_traces"], 1) if stats["kept_traces"] else None,
        "tokens_saved_share": round(1 - kept / total, 4) if total else None,
    }
