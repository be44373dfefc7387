"""The student's view of each prompt: pass rate, difficulty, PACED weight, pass-rate filters.

With a student in the loop (stage ``student``), what matters is how hard a prompt is
*for the model being trained*. PACED weights a prompt by w(p) = p^alpha (1-p)^beta of
the student's pass rate p, which peaks where the student sometimes succeeds; open-r1
filters prompts by a probe model's pass rate; Light-R1's second stage keeps what the
student still fails. Every function here works on ONE prompt (its student stats, its
output rows), so it plugs into a per-prompt loop; :func:`with_student_columns` applies
them to a whole output.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import datasets

from datagen.config import OutputConfig
from datagen.output.difficulty import PromptStats, difficulty, prompt_stats, sft_weight
from datagen.output.formats import to_dataset
from datagen.records import ROLE_STUDENT, Sample

STUDENT_COLUMNS: dict[str, Any] = {
    "teacher_pass_rate": datasets.Value("float64"),
    "teacher_graded": datasets.Value("int32"),
    "teacher_difficulty": datasets.Value("string"),
    "paced_weight": datasets.Value("float64"),
}
"""Columns a student adds (after ``difficulty``); ``pass_rate``, ``graded`` and
``difficulty`` then hold the student's numbers."""


def teacher_samples(samples: Sequence[Sample]) -> list[Sample]:
    """The teachers' samples (the student's left out)."""
    return [s for s in samples if s.role != ROLE_STUDENT]


def student_stats(samples: Sequence[Sample]) -> dict[str, PromptStats]:
    """The student's positives and negatives per prompt (from ``role == "student"`` rows)."""
    return prompt_stats([s for s in samples if s.role == ROLE_STUDENT])


def paced_weight(pass_rate: float | None, alpha: float, beta: float) -> float | None:
    """PACED's weight w(p) = p^alpha (1-p)^beta (None when the student graded nothing).

    >>> paced_weight(0.5, 1.0, 1.0), paced_weight(1.0, 1.0, 1.0), paced_weight(None, 1, 1)
    (0.25, 0.0, None)
    """
    if pass_rate is None:
        return None
    return pass_rate**alpha * (1.0 - pass_rate) ** beta


def student_reason_left_out(pass_rate: float | None, cfg: OutputConfig) -> str | None:
    """Why a prompt's rows stay out of the outputs given its student pass rate, or None.

    A prompt the student graded nothing on is kept (nothing is known against it).

    >>> student_reason_left_out(1.0, OutputConfig(student_drop_solved=True))
    'student always solves'
    """
    if pass_rate is None:
        return None
    if cfg.student_drop_solved and pass_rate >= 1.0:
        return "student always solves"
    if pass_rate > cfg.student_max_pass_rate + 1e-12:
        return "student pass rate above max"
    if pass_rate < cfg.student_min_pass_rate - 1e-12:
        return "student pass rate below min"
    return None


def student_columns(row: dict[str, Any], stats: PromptStats | None, cfg: OutputConfig) -> dict:
    """One output row with the student's pass rate, graded and difficulty, the teachers'
    kept beside them, and the PACED weight (the SFT ``weight`` follows the student)."""
    rate = stats.pass_rate if stats is not None else None
    out = dict(row)
    out["teacher_pass_rate"] = row["pass_rate"]
    out["teacher_graded"] = row["graded"]
    out["teacher_difficulty"] = row["difficulty"]
    out["pass_rate"] = rate
    out["graded"] = stats.graded if stats is not None else 0
    out["difficulty"] = difficulty(rate, cfg.difficulty_edges)
    out["paced_weight"] = paced_weight(rate, cfg.paced_alpha, cfg.paced_beta)
    if "weight" in row:
        out["weight"] = sft_weight(rate, cfg.sft_weighting, cfg.paced_alpha, cfg.paced_beta)
    return out


def student_features(features: datasets.Features) -> datasets.Features:
    """``features`` with :data:`STUDENT_COLUMNS` inserted after ``difficulty``."""
    cols: dict[str, Any] = {}
    for name, feature in features.items():
        cols[name] = feature
        if name == "difficulty":
            cols.update(STUDENT_COLUMNS)
    return datasets.Features(cols)


def with_student_columns(
    ds: datasets.Dataset, samples: Sequence[Sample], cfg: OutputConfig
) -> tuple[datasets.Dataset, dict[str, int]]:
    """An output with the student's columns, less the prompts its pass-rate filters drop.

    Returns:
        The new dataset and the rows left out, by reason.
    """
    stats = student_stats(samples)
    left_out: Counter[str] = Counter()
    rows = []
    for row in ds.to_list():
        st = stats.get(row["problem_id"])
        reason = student_reason_left_out(st.pass_rate if st else None, cfg)
        if reason is not None:
            left_out[reason] += 1
            continue
        rows.append(student_columns(row, st, cfg))
    return to_dataset(rows, student_features(ds.features)), dict(sorted(left_out.items()))


def stage2_selects(pass_rate: float | None, has_teacher_correct: bool, threshold: float) -> bool:
    """Light-R1's second stage: the student's pass rate is at most ``threshold`` and some
    teacher trace of the prompt is verified correct (a prompt the student never tried is
    not known to be hard: left out).

    >>> stage2_selects(0.25, True, 0.5), stage2_selects(0.75, True, 0.5)
    (True, False)
    >>> stage2_selects(0.0, False, 0.5), stage2_selects(None, True, 0.5)
    (False, False)
    """
    return pass_rate is not None and has_teacher_correct and pass_rate <= threshold + 1e-12
