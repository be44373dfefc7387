"""Pass rate per prompt, difficulty buckets, SFT weights, and what fixed-N sampling yields.

A prompt's pass rate is the share of its graded samples (verified correct or
incorrect; unverifiable ones are not counted) that passed. It is measured on
the samples that reach the outputs, i.e. after the ``filter`` stage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from math import comb

import polars as pl

from datagen.records import Sample

BUCKETS: tuple[str, ...] = ("unsolved", "hard", "medium", "easy", "solved", "ungraded")
"""Difficulty labels, hardest first; ``ungraded`` has no verified sample at all."""


@dataclass(frozen=True)
class PromptStats:
    """What the verdicts say about one prompt."""

    positives: int
    negatives: int

    @property
    def graded(self) -> int:
        return self.positives + self.negatives

    @property
    def pass_rate(self) -> float | None:
        return self.positives / self.graded if self.graded else None


def prompt_stats(samples: Sequence[Sample]) -> dict[str, PromptStats]:
    """Positives and negatives per ``problem_id``.

    >>> from datagen.records import Sample
    >>> rows = [Sample(str(i), "p", "math", [], "1", "t", "m", i) for i in range(3)]
    >>> rows[0].passed, rows[1].passed = True, False
    >>> prompt_stats(rows)["p"]
    PromptStats(positives=1, negatives=1)
    """
    pos: dict[str, int] = defaultdict(int)
    neg: dict[str, int] = defaultdict(int)
    for s in samples:
        pos[s.problem_id] += s.passed is True
        neg[s.problem_id] += s.passed is False
    return {pid: PromptStats(pos[pid], neg[pid]) for pid in pos}


def pass_rates(samples: Sequence[Sample]) -> dict[str, float]:
    """Share of verified-correct samples per problem (prompts with no graded sample left out)."""
    return {
        pid: st.pass_rate for pid, st in prompt_stats(samples).items() if st.pass_rate is not None
    }


def difficulty(pass_rate: float | None, edges: Sequence[float] = (0.3, 0.7)) -> str:
    """The difficulty bucket of a pass rate.

    Args:
        pass_rate: Share of graded samples that passed, or None when none was graded.
        edges: ``(low, high)``: below ``low`` is hard, from ``high`` on is easy.

    Returns:
        One of :data:`BUCKETS`.

    >>> [difficulty(p) for p in (0.0, 0.25, 0.5, 0.75, 1.0, None)]
    ['unsolved', 'hard', 'medium', 'easy', 'solved', 'ungraded']
    """
    if pass_rate is None:
        return "ungraded"
    if pass_rate <= 0.0:
        return "unsolved"
    if pass_rate >= 1.0:
        return "solved"
    low, high = edges
    if pass_rate < low:
        return "hard"
    return "medium" if pass_rate < high else "easy"


def bucket_expr(positives: str, negatives: str, edges: Sequence[float] = (0.3, 0.7)) -> pl.Expr:
    """:func:`difficulty` as a polars expression over count columns (the same float operations).

    >>> frame = pl.DataFrame({"p": [0, 1, 1, 3, 2, 0], "n": [2, 3, 1, 1, 0, 0]})
    >>> frame.select(bucket_expr("p", "n"))["bucket"].to_list()
    ['unsolved', 'hard', 'medium', 'easy', 'solved', 'ungraded']
    """
    low, high = edges
    graded = pl.col(positives) + pl.col(negatives)
    rate = pl.col(positives) / graded
    return (
        pl.when(graded == 0)
        .then(pl.lit("ungraded"))
        .when(rate <= 0.0)
        .then(pl.lit("unsolved"))
        .when(rate >= 1.0)
        .then(pl.lit("solved"))
        .when(rate < low)
        .then(pl.lit("hard"))
        .when(rate < high)
        .then(pl.lit("medium"))
        .otherwise(pl.lit("easy"))
        .alias("bucket")
    )


def pass_rate_summary(samples: Sequence[Sample], edges: Sequence[float]) -> dict[str, object]:
    """Counts and pass rates over every prompt of a run (for the cards).

    >>> from datagen.records import Sample
    >>> rows = [Sample(str(i), "p", "math", [], "1", "t", "m", i, passed=i == 0) for i in range(4)]
    >>> pass_rate_summary(rows, (0.3, 0.7))["prompts_by_difficulty"]
    {'hard': 1}
    """
    tally = PassRateTally(edges)
    tally.add(samples)
    return tally.summary()


class PassRateTally:
    """:func:`pass_rate_summary` added up chunk by chunk (each chunk holds whole prompts),
    so emit never holds every sample; the sums run in the same order, so the result is
    the same to the last digit."""

    def __init__(self, edges: Sequence[float]) -> None:
        self.edges = tuple(edges)
        self.prompts = self.samples = self.positives = self.negatives = self.rated = 0
        self.rate_sum: float = 0
        self.buckets: dict[str, int] = defaultdict(int)

    def add(self, samples: Sequence[Sample]) -> None:
        """Count one chunk of samples (no prompt split across chunks)."""
        self.samples += len(samples)
        for st in prompt_stats(samples).values():
            self.prompts += 1
            self.positives += st.positives
            self.negatives += st.negatives
            if st.pass_rate is not None:
                self.rate_sum += st.pass_rate
                self.rated += 1
            self.buckets[difficulty(st.pass_rate, self.edges)] += 1

    def summary(self) -> dict[str, object]:
        return {
            "prompts": self.prompts,
            "samples": self.samples,
            "positives": self.positives,
            "negatives": self.negatives,
            "mean_pass_rate": round(self.rate_sum / self.rated, 4) if self.rated else None,
            "prompts_by_difficulty": {b: self.buckets[b] for b in BUCKETS if self.buckets[b]},
        }


def sft_weight(
    pass_rate: float | None, weighting: str, alpha: float = 1.0, beta: float = 1.0
) -> float:
    """The SFT ``weight`` column: 1.0, the failure rate (1 - p), or PACED's p^alpha (1-p)^beta.

    >>> sft_weight(0.25, "failure_rate"), sft_weight(0.25, "none"), sft_weight(0.5, "paced")
    (0.75, 1.0, 0.25)
    """
    if weighting == "failure_rate" and pass_rate is not None:
        return 1.0 - pass_rate
    if weighting == "paced" and pass_rate is not None:
        return pass_rate**alpha * (1.0 - pass_rate) ** beta
    return 1.0


def prob_pairable(p_pos: float, n: int, p_neg: float | None = None) -> float:
    """Chance that ``n`` independent samples hold at least one positive and one negative.

    Args:
        p_pos: Chance that one sample is a (usable) positive.
        n: Samples drawn.
        p_neg: Chance that one sample is a (usable) negative; default ``1 - p_pos``.
            When ``p_pos + p_neg < 1`` the rest is neither (truncated, unverifiable).

    Returns:
        ``1 - P(no positive) - P(no negative) + P(neither)``.

    >>> round(prob_pairable(0.5, 2), 3), prob_pairable(1.0, 8), prob_pairable(0.5, 2, 0.25)
    (0.5, 0.0, 0.25)
    """
    q = 1.0 - p_pos if p_neg is None else p_neg
    rest = max(0.0, 1.0 - p_pos - q)
    return max(0.0, 1.0 - (1.0 - p_pos) ** n - (1.0 - q) ** n + rest**n)


def expected_pairs(pass_rate: float, n: int, policy: str, cap: int) -> float:
    """Expected pairs one prompt gives from ``n`` samples under a pair policy.

    Exact over the binomial number of positives ``X``: ``random`` gives one pair
    when ``0 < X < n``; ``all`` gives ``min(cap, X (n - X))``; ``length_matched``
    gives ``min(cap, X, n - X)``.

    Args:
        pass_rate: The prompt's chance that one sample passes.
        n: Samples drawn.
        policy: ``all``, ``random`` or ``length_matched``.
        cap: ``output.max_pairs_per_prompt``.

    Returns:
        The expected number of pairs.

    >>> expected_pairs(0.5, 2, "random", 4), expected_pairs(0.5, 2, "all", 4)
    (0.5, 0.5)
    """
    total = 0.0
    for x in range(1, n):
        mass = comb(n, x) * pass_rate**x * (1.0 - pass_rate) ** (n - x)
        if policy == "random":
            pairs = 1
        elif policy == "length_matched":
            pairs = min(cap, x, n - x)
        else:
            pairs = min(cap, x * (n - x))
        total += mass * pairs
    return total
