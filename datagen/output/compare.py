"""Several teachers on the same prompts, side by side (for the summary and the cards).

"Not All Correct Answers Are Equal" distils several teachers on one query set and
compares how often each is right, how long its correct and incorrect traces are,
and what a correct answer costs. :func:`teacher_table` computes that over the
samples that reached the outputs, restricted to the prompts every teacher answered
(so the rows compare like with like). The student, if any, is left out of the
teachers' rows and reported beside them.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from datagen.output.tokens import TokenCounter
from datagen.records import ROLE_STUDENT, Sample

COLUMNS: tuple[tuple[str, str], ...] = (
    ("teacher", "teacher"),
    ("model", "model"),
    ("samples", "samples"),
    ("pass rate", "pass_rate"),
    ("mean / median tokens, correct", "correct_tokens"),
    ("mean / median tokens, incorrect", "incorrect_tokens"),
    ("tokens per correct answer", "tokens_per_correct"),
    ("cost per correct answer (USD)", "cost_per_correct_usd"),
    ("share of prompts only it solved", "only_solved_share"),
)
"""(card heading, row key) of the table, in order."""


def _mean_median(values: list[int]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "median": None}
    return {"mean": round(statistics.fmean(values), 2), "median": statistics.median(values)}


def teacher_table(samples: Iterable[Sample], counter: TokenCounter | None = None) -> dict[str, Any]:
    """Per-teacher statistics on the prompts every teacher answered.

    One pass over ``samples`` (rows may stream from disk); per sample only its prompt,
    verdict, token count and cost are kept.

    Args:
        samples: The samples that reached the outputs (the student's are skipped).
        counter: Counts response tokens (default: the teacher-reported counts).

    Returns:
        ``{"prompts": n, "teachers": [row, ...]}``, one row per teacher label in
        first-seen order: ``samples``, ``graded``, ``positives``, ``pass_rate``
        (positives / graded), ``correct_tokens`` and ``incorrect_tokens`` (mean and
        median response tokens), ``tokens_per_correct`` (all its response tokens /
        positives), ``cost_per_correct_usd`` (its cost / positives), and
        ``only_solved_share`` (prompts where it alone has a correct trace / prompts).
    """
    counter = counter or TokenCounter()
    # teacher -> prompt -> [(passed, tokens, cost)]
    seen: dict[str, dict[str, list[tuple[bool | None, int, float]]]] = {}
    models: dict[str, str] = {}
    for s in samples:
        if s.role == ROLE_STUDENT:
            continue
        models.setdefault(s.teacher, s.model)
        per_prompt = seen.setdefault(s.teacher, defaultdict(list))
        per_prompt[s.problem_id].append((s.passed, counter.response_tokens(s), s.cost))
    if not seen:
        return {"prompts": 0, "teachers": []}
    common = set.intersection(*(set(p) for p in seen.values()))
    solvers: dict[str, set[str]] = defaultdict(set)  # prompt -> teachers with a correct trace
    for label, per_prompt in seen.items():
        for pid in common:
            if any(passed is True for passed, _, _ in per_prompt[pid]):
                solvers[pid].add(label)
    rows = []
    for label, per_prompt in seen.items():
        mine = [x for pid in common for x in per_prompt[pid]]
        right = [tokens for passed, tokens, _ in mine if passed is True]
        wrong = [tokens for passed, tokens, _ in mine if passed is False]
        tokens = sum(t for _, t, _ in mine)
        cost = sum(c for _, _, c in mine)
        graded = len(right) + len(wrong)
        alone = sum(1 for who in solvers.values() if who == {label})
        rows.append(
            {
                "teacher": label,
                "model": models[label],
                "samples": len(mine),
                "graded": graded,
                "positives": len(right),
                "pass_rate": round(len(right) / graded, 4) if graded else None,
                "correct_tokens": _mean_median(right),
                "incorrect_tokens": _mean_median(wrong),
                "tokens_per_correct": round(tokens / len(right), 2) if right else None,
                "cost_per_correct_usd": round(cost / len(right), 8) if right else None,
                "only_solved_share": round(alone / len(common), 4) if common else None,
            }
        )
    return {"prompts": len(common), "teachers": rows}


def render_teacher_table(table: dict[str, Any]) -> str:
    """The table as markdown (empty when fewer than two teachers: nothing to compare)."""
    rows = table.get("teachers") or []
    if len(rows) < 2:
        return ""

    def cell(value: Any) -> str:
        if isinstance(value, dict):
            return " / ".join("-" if v is None else str(v) for v in value.values())
        return "-" if value is None else str(value)

    head = "| " + " | ".join(h for h, _ in COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(cell(r[k]) for _, k in COLUMNS) + " |\n" for r in rows)
    return (
        "## Teachers compared\n\n"
        f"On the {table['prompts']} prompts every teacher answered (samples kept by the "
        "filters; tokens are response tokens; cost is what the teacher reported):\n\n" + head + body
    )
