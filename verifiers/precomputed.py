"""Precomputed verifier: decide ``passed`` from a score or label that came with the data.

Traces imported from elsewhere often carry a judgement already: a reward
model's score (Qwen2.5-Math's ``rm_score``), a correctness label (OpenR1-Math's
``correctness_math_verify``). This verifier applies the same rules as
:mod:`verifiers.reward` to such scores (``threshold``, ``top_k``,
``top_fraction``; :func:`select` holds them), or takes a label as it is, and
records where it came from.

Example:
    >>> cfg = PrecomputedConfig(rule="threshold", threshold=1.0)
    >>> [v.passed for v in verify_scores([0.5, 2.0, None], cfg)]
    [False, True, None]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from verifiers.types import Verdict

VERSION = "1"

USES: tuple[str, ...] = ("score", "label")
RULES: tuple[str, ...] = ("threshold", "top_k", "top_fraction")
RANK_RULES: tuple[str, ...] = ("top_k", "top_fraction")
"""Rules that compare the samples of one prompt with each other (they need ``group_ids``)."""


def validate_rule(rule: str, k: int, fraction: float) -> None:
    """Check the selection fields shared by the score-based verifiers.

    Raises:
        ValueError: Naming the field and the allowed values.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1 (samples kept per prompt by rule=top_k), got {k}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(
            f"fraction must be in (0, 1] (share kept by rule=top_fraction), got {fraction}"
        )


def select(
    scores: Sequence[float | None],
    *,
    rule: str,
    threshold: float = 0.0,
    k: int = 1,
    fraction: float = 0.5,
    group_ids: Sequence[Any] | None = None,
) -> list[tuple[bool | None, dict[str, Any]]]:
    """Apply a selection rule to scores: ``(passed, details)`` per score.

    A ``None`` score gives ``passed=None`` and is left out of its group's ranking.

    Args:
        scores: One score per sample, or None where there is none.
        rule: ``threshold``, ``top_k`` or ``top_fraction``.
        threshold: Pass mark of ``rule=threshold``.
        k: Samples per group that pass under ``top_k`` (ties at the cut all pass).
        fraction: Share per group that passes under ``top_fraction`` (rounded up).
        group_ids: The group (prompt) of each sample; required by the rank rules.

    Returns:
        ``passed`` and details (``threshold``, or ``rank`` of ``of`` scored in the group).

    Raises:
        ValueError: A rank rule without ``group_ids``, or lengths that differ.

    Example:
        >>> [p for p, _ in select([0.2, 0.9, 0.9, None], rule="top_k", k=1, group_ids="aaaa")]
        [False, True, True, None]
        >>> [p for p, _ in select([0.2, 0.9], rule="threshold", threshold=0.5)]
        [False, True]
    """
    validate_rule(rule, k, fraction)
    if rule == "threshold":
        return [
            (None, {}) if s is None else (s >= threshold, {"threshold": threshold}) for s in scores
        ]
    if group_ids is None:
        raise ValueError(
            f"rule={rule} ranks the samples of each prompt: pass group_ids (the prompt id of "
            "each sample), or use rule='threshold'"
        )
    if len(group_ids) != len(scores):
        raise ValueError(f"got {len(scores)} scores but {len(group_ids)} group_ids")
    groups: dict[Any, list[int]] = {}
    for i, (s, g) in enumerate(zip(scores, group_ids, strict=True)):
        if s is not None:
            groups.setdefault(g, []).append(i)
    out: list[tuple[bool | None, dict[str, Any]]] = [(None, {})] * len(scores)
    for members in groups.values():
        ranked = sorted((scores[i] for i in members), reverse=True)  # type: ignore[type-var]
        keep = k if rule == "top_k" else math.ceil(fraction * len(ranked))
        cutoff = ranked[min(keep, len(ranked)) - 1]
        for i in members:
            score = scores[i]
            rank = 1 + sum(other > score for other in ranked)  # type: ignore[operator]
            out[i] = (score >= cutoff, {"rank": rank, "of": len(ranked)})  # type: ignore[operator]
    return out


@dataclass(frozen=True)
class PrecomputedConfig:
    """Options of the precomputed verifier."""

    source: str = "imported"
    """Name of the verdict already on each sample that holds the score or label; in datagen,
    the replay teacher's ``teacher.label_name`` (its ``score_field`` gives the score)."""
    use: str = "score"
    """``score``: apply ``rule`` to the stored score. ``label``: take the stored pass/fail."""
    rule: str = "threshold"
    """``threshold``, ``top_k`` or ``top_fraction`` (per prompt), as in :mod:`verifiers.reward`."""
    threshold: float = 0.0
    """``rule=threshold``: passed when ``score >= threshold``."""
    k: int = 1
    """``rule=top_k``: samples per prompt that pass (ties with the k-th all pass)."""
    fraction: float = 0.5
    """``rule=top_fraction``: share of a prompt's scored samples that pass (rounded up)."""

    def __post_init__(self) -> None:
        if self.use not in USES:
            raise ValueError(f"use must be one of {USES}, got {self.use!r}")
        if not self.source:
            raise ValueError("source must name the verdict holding the score, e.g. source=imported")
        validate_rule(self.rule, self.k, self.fraction)


def verify_scores(
    scores: Sequence[float | None],
    cfg: PrecomputedConfig,
    *,
    group_ids: Sequence[Any] | None = None,
) -> list[Verdict]:
    """Decide ``passed`` from stored scores by ``cfg.rule``.

    Args:
        scores: One score per sample; None where the data has none.
        cfg: Verifier options.
        group_ids: The prompt of each sample; needed by the rank rules.

    Returns:
        One ``Verdict`` per score, ``score`` copied; a missing score is unverifiable
        (``passed=None``, error ``"no_score"``).
    """
    decided = select(
        scores,
        rule=cfg.rule,
        threshold=cfg.threshold,
        k=cfg.k,
        fraction=cfg.fraction,
        group_ids=group_ids,
    )
    out = []
    for score, (passed, evidence) in zip(scores, decided, strict=True):
        if score is None:
            details: dict[str, Any] = {"source": cfg.source, "error": "no_score"}
        else:
            details = {"source": cfg.source, "rule": cfg.rule, **evidence, "error": None}
        out.append(Verdict("precomputed", VERSION, passed, score, details))
    return out


def verify_labels(
    labels: Sequence[bool | None],
    cfg: PrecomputedConfig,
    scores: Sequence[float | None] | None = None,
) -> list[Verdict]:
    """Take stored pass/fail labels as verdicts (None: unverifiable, error ``"no_label"``).

    Args:
        labels: One label per sample.
        cfg: Verifier options (``source`` is recorded).
        scores: Stored scores to keep beside the labels, if any.
    """
    scores = scores if scores is not None else [None] * len(labels)
    out = []
    for label, score in zip(labels, scores, strict=True):
        error = None if label is not None else "no_label"
        details = {"source": cfg.source, "error": error}
        out.append(Verdict("precomputed", VERSION, label, score, details))
    return out
