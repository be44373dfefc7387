"""Preference pairs (REDI, DPO): a verified-correct and a verified-incorrect answer to one prompt.

Rules every pair obeys, whatever the policy:

- ``chosen`` passed verification and was not cut off (finish reason ``length``);
  ``rejected`` failed verification. Unverifiable samples are never used.
- Both sides answer the same prompt: samples are grouped by problem id *and*
  prompt messages, so a pair cannot mix prompts.
- Neither side, nor the prompt, is over ``output.max_prompt_tokens`` /
  ``max_response_tokens`` (counted by :class:`~datagen.output.tokens.TokenCounter`).
- Every pair records both sample ids and indices, teachers, models and the
  verifiers (name and version) that judged them.

Policies (``output.pair_policy``) decide which combinations of a prompt's
positives and negatives become pairs; each draws with its own
``random.Random(f"{seed}:{problem_id}")``, so pairs are reproducible per prompt.
Two policies change the pools the sides come from (:func:`pair_pools`):
``teacher_vs_student`` (Light-R1's semi-on-policy DPO, DistiLLM-2) takes
``rejected`` from the student's verified-wrong samples (``role="student"``), and
``shorter_correct`` (against overthinking) pairs a shorter correct trace over a
longer correct one, so both sides passed there. Otherwise only the teachers'
samples are used.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import datasets

from datagen.config import OutputConfig
from datagen.output.difficulty import difficulty, prompt_stats
from datagen.output.formats import (
    OutputSpec,
    assistant_turn,
    check_format,
    pair_features,
    register_output,
    to_dataset,
    verifier_list,
)
from datagen.output.sft import is_truncated
from datagen.output.tokens import TokenCounter, over_length
from datagen.records import ROLE_STUDENT, Sample, content_hash

Pick = Callable[
    [list[Sample], list[Sample], random.Random, int, TokenCounter], list[tuple[int, int]]
]


def pick_all(
    good: list[Sample], bad: list[Sample], rng: random.Random, cap: int, counter: TokenCounter
) -> list[tuple[int, int]]:
    """Every chosen x rejected combination, shuffled, first ``cap``."""
    combos = [(g, b) for g in range(len(good)) for b in range(len(bad))]
    rng.shuffle(combos)
    return combos[:cap]


def pick_random(
    good: list[Sample], bad: list[Sample], rng: random.Random, cap: int, counter: TokenCounter
) -> list[tuple[int, int]]:
    """One random combination (REDI's one pair per prompt)."""
    return [(rng.randrange(len(good)), rng.randrange(len(bad)))]


def pick_length_matched(
    good: list[Sample], bad: list[Sample], rng: random.Random, cap: int, counter: TokenCounter
) -> list[tuple[int, int]]:
    """Closest response lengths first, each sample in at most one pair, up to ``cap``.

    Matching lengths keeps a preference learner from learning "shorter wins" (or
    "longer wins") instead of "correct wins". Ties are broken at random.
    """
    glen = [counter.response_tokens(s) for s in good]
    blen = [counter.response_tokens(s) for s in bad]
    ranked = sorted(
        (abs(glen[g] - blen[b]), rng.random(), g, b)
        for g in range(len(good))
        for b in range(len(bad))
    )
    used_g: set[int] = set()
    used_b: set[int] = set()
    out: list[tuple[int, int]] = []
    for _, _, g, b in ranked:
        if g in used_g or b in used_b:
            continue
        out.append((g, b))
        used_g.add(g)
        used_b.add(b)
        if len(out) == cap:
            break
    return out


def pick_shorter_correct(
    good: list[Sample], bad: list[Sample], rng: random.Random, cap: int, counter: TokenCounter
) -> list[tuple[int, int]]:
    """Shortest over longest, second shortest over second longest, ...: each trace once,
    chosen strictly shorter than rejected (ties make no pair), up to ``cap``.

    ``good`` and ``bad`` are the same list here: one prompt's usable correct traces.
    """
    ranked = sorted(range(len(good)), key=lambda i: (counter.response_tokens(good[i]), i))
    out: list[tuple[int, int]] = []
    lo, hi = 0, len(ranked) - 1
    while lo < hi and len(out) < cap:
        short, long = ranked[lo], ranked[hi]
        if counter.response_tokens(good[short]) < counter.response_tokens(good[long]):
            out.append((short, long))
        lo, hi = lo + 1, hi - 1
    return out


PAIR_POLICIES: dict[str, Pick] = {
    "all": pick_all,
    "random": pick_random,
    "length_matched": pick_length_matched,
    "teacher_vs_student": pick_all,
    "shorter_correct": pick_shorter_correct,
}
"""``output.pair_policy`` -> the function that picks ``(chosen, rejected)`` indices."""


def chosen_reason_left_out(s: Sample, cfg: OutputConfig, counter: TokenCounter) -> str | None:
    """Why a verified-correct sample cannot be ``chosen``, or None."""
    if is_truncated(s):
        return "truncated chosen"
    side = over_length(s, counter, cfg.max_prompt_tokens, cfg.max_response_tokens)
    return f"{side} over length cap" if side else None


def rejected_reason_left_out(s: Sample, cfg: OutputConfig, counter: TokenCounter) -> str | None:
    """Why a verified-incorrect sample cannot be ``rejected``, or None."""
    side = over_length(s, counter, cfg.max_prompt_tokens, cfg.max_response_tokens)
    return f"{side} over length cap" if side else None


def pair_pools(
    group: Sequence[Sample], policy: str, cfg: OutputConfig, counter: TokenCounter
) -> tuple[list[Sample], list[Sample], Counter[str]]:
    """One prompt's candidates for ``chosen`` and ``rejected`` under ``policy``.

    ``chosen`` is always a teacher's usable verified-correct sample; ``rejected`` is a
    teacher's verified-incorrect one, the student's (``teacher_vs_student``), or the same
    correct list (``shorter_correct``). Unverifiable samples are never used.

    Returns:
        ``(chosen candidates, rejected candidates, samples left out by reason)``.
    """
    left_out: Counter[str] = Counter()
    good: list[Sample] = []
    bad: list[Sample] = []
    wrong_role = ROLE_STUDENT if policy != "teacher_vs_student" else "teacher"
    for s in group:
        if s.passed is None:
            continue
        if s.passed and s.role != ROLE_STUDENT:
            reason, target = chosen_reason_left_out(s, cfg, counter), good
        elif not s.passed and s.role != wrong_role:
            reason, target = rejected_reason_left_out(s, cfg, counter), bad
        else:
            continue
        if reason is None:
            target.append(s)
        else:
            left_out[reason] += 1
    good.sort(key=_sample_order)  # the draw depends on the seed, not on row order
    bad.sort(key=_sample_order)
    if policy == "shorter_correct":
        bad = good
    return good, bad, left_out


def build_pairs(
    samples: Sequence[Sample],
    cfg: OutputConfig | None = None,
    seed: int = 0,
    counter: TokenCounter | None = None,
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """Pair verified-correct with verified-incorrect samples of the same prompt.

    Args:
        samples: Verified samples of any number of prompts.
        cfg: Output options: policy, cap per prompt, length caps, reasoning placement.
        seed: ``run.seed``; with the problem id it seeds each prompt's draw.
        counter: Token counter for the length caps (default: the teacher's counts).

    Returns:
        The dataset (schema :func:`~datagen.output.formats.pair_features`) and its build
        stats: pairs, prompts paired, prompts with a positive and a negative before and
        after the exclusions, and samples left out by reason.
    """
    cfg = cfg or OutputConfig()
    counter = counter or TokenCounter()
    pick = PAIR_POLICIES[cfg.pair_policy]
    cap = 1 if cfg.pair_policy == "random" else cfg.max_pairs_per_prompt
    rates = prompt_stats([s for s in samples if s.role != ROLE_STUDENT])
    groups: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    hashes: dict[tuple, str] = {}  # a prompt's samples share its messages: hash them once
    for s in samples:
        key = tuple(tuple(sorted(m.items())) for m in s.messages)
        if key not in hashes:
            hashes[key] = content_hash(s.messages)
        groups[(s.problem_id, hashes[key])].append(s)

    left_out: Counter[str] = Counter()
    both_before = 0
    rows: list[dict[str, Any]] = []
    for (pid, _), group in groups.items():
        good, bad, dropped = pair_pools(group, cfg.pair_policy, cfg, counter)
        left_out.update(dropped)
        if pid not in rates:  # only the student answered it (its teacher rows were set aside)
            continue
        pos, neg = rates[pid].positives, rates[pid].negatives
        both_before += pos > 0 and neg > 0
        if not good or not bad:
            continue
        rng = random.Random(f"{seed}:{pid}")
        for g, b in pick(good, bad, rng, cap, counter):
            rows.append(_pair_row(good[g], bad[b], cfg, counter, rates[pid].pass_rate, pos + neg))
    ds = to_dataset(rows, pair_features(cfg.reasoning_column))
    check_format(ds.column_names, "preference")
    return ds, {
        "rows": len(ds),
        "prompts": len({r["problem_id"] for r in rows}),
        "prompts_with_positive_and_negative": both_before,
        "policy": cfg.pair_policy,
        "left_out": dict(sorted(left_out.items())),
    }


def _sample_order(s: Sample) -> tuple[int, str]:
    return s.sample_index, s.id


def _pair_row(
    chosen: Sample,
    rejected: Sample,
    cfg: OutputConfig,
    counter: TokenCounter,
    pass_rate: float | None,
    graded: int,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": content_hash(chosen.id, rejected.id),
        "problem_id": chosen.problem_id,
        "domain": chosen.domain,
        "source": chosen.source,
        "prompt": chosen.messages,
        "chosen": assistant_turn(chosen, cfg.reasoning_in_content),
        "rejected": assistant_turn(rejected, cfg.reasoning_in_content),
    }
    if cfg.reasoning_column:
        row["chosen_reasoning"] = chosen.reasoning
        row["rejected_reasoning"] = rejected.reasoning
    for side, s in (("chosen", chosen), ("rejected", rejected)):
        row[f"{side}_sample_id"] = s.id
        row[f"{side}_sample_index"] = s.sample_index
        row[f"{side}_teacher"] = s.teacher
        row[f"{side}_model"] = s.model
    row.update(
        {
            "reference": chosen.reference,
            "verifiers": verifier_list([chosen, rejected]),
            "pair_policy": cfg.pair_policy,
            "prompt_tokens": counter.prompt_tokens(chosen),
            "chosen_tokens": counter.response_tokens(chosen),
            "rejected_tokens": counter.response_tokens(rejected),
            "pass_rate": pass_rate,
            "graded": graded,
            "difficulty": difficulty(pass_rate, cfg.difficulty_edges),
        }
    )
    return row


def _samples_per_pair(summary: dict[str, Any], pairs: int) -> dict[str, Any]:
    """Teacher samples spent per pair made (what a pair cost)."""
    if summary.get("samples") and pairs:
        return {"samples_per_pair": round(summary["samples"] / pairs, 3)}
    return {}


register_output(
    OutputSpec(
        "redi_pairs",
        "preference",
        "Preference pairs from one prompt: chosen verified correct, rejected incorrect.",
        build_pairs,
        pair_features,
        summary_label="pairs",
        summary_extra=_samples_per_pair,
        summary_extra_labels=(("samples per pair", "samples_per_pair"),),
    )
)
