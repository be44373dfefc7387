"""Card sections of curation: teachers compared, the student in the loop, length selection.

Kept apart from :mod:`datagen.output.card` (which renders what every card has); emit
hands these to :func:`~datagen.output.card.render_card` as ``extra_sections``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from datagen.config import OutputConfig
from datagen.output.compare import render_teacher_table
from datagen.output.selection import efficiency_ratios
from datagen.output.student import student_stats
from datagen.records import ROLE_STUDENT, Sample


def student_report_of(samples: Sequence[Sample], ctx: Any) -> dict[str, Any] | None:
    """The student's numbers for the card (None: no student in this run)."""
    scfg = ctx.config.student
    if not scfg.enabled:
        return None
    stats = student_stats(samples)
    rates = [st.pass_rate for st in stats.values() if st.pass_rate is not None]
    return {
        "label": scfg.label,
        "backend": scfg.backend.name,
        "model": getattr(scfg.backend, "model", None),
        "k": scfg.k,
        "prompts": len(stats),
        "samples": sum(1 for s in samples if s.role == ROLE_STUDENT),
        "mean_pass_rate": round(statistics.fmean(rates), 4) if rates else None,
    }


def student_section(student: Mapping[str, Any] | None, cfg: OutputConfig) -> str:
    """How the student set the pass rates, the PACED weight and the filters."""
    if student is None:
        return ""
    filters = [
        f"pass rate in [{cfg.student_min_pass_rate}, {cfg.student_max_pass_rate}]",
        *(["prompts the student always solves dropped"] if cfg.student_drop_solved else []),
    ]
    return (
        "## Student in the loop\n\n"
        f"Student `{student['label']}` ({student['backend']}, model `{student['model']}`) "
        f"answered {student['prompts']} prompts {student['k']} times each "
        f"({student['samples']} samples, same verifier); mean pass rate "
        f"{student['mean_pass_rate']}. `pass_rate`, `graded` and `difficulty` are the "
        "student's; the teachers' are `teacher_pass_rate`, `teacher_graded`, "
        "`teacher_difficulty`. `paced_weight` = p^alpha (1-p)^beta of the student's pass "
        f"rate p (PACED), alpha = {cfg.paced_alpha}, beta = {cfg.paced_beta}. Filters "
        f"(open-r1's pass-rate filter): {'; '.join(filters)}.\n"
    )


def selection_section(outputs: Mapping[str, Any], cfg: OutputConfig) -> str:
    """Token efficiency of the length-aware selection of correct traces."""
    out = outputs.get("sft_positive")
    sel = out.stats.get("selection") if out is not None else None
    if not sel or (cfg.sft_selection == "all" and cfg.pair_policy != "shorter_correct"):
        return ""
    sel = {**sel, **efficiency_ratios(sel)}
    return (
        "## Length-aware selection\n\n"
        f"`output.sft_selection={cfg.sft_selection}` (k = {cfg.sft_selection_k}): of "
        f"{sel['correct_traces']} usable verified-correct traces on {sel['prompts']} prompts, "
        f"{sel['kept_traces']} were kept; mean response tokens {sel['mean_tokens_correct']} "
        f"-> {sel['mean_tokens_kept']} ({sel['tokens_correct']} -> {sel['tokens_kept']} "
        f"tokens, {sel['tokens_saved_share']} saved). No incorrect trace is ever kept by a "
        "length rule.\n"
    )


def curation_sections(
    table: Mapping[str, Any],
    student: Mapping[str, Any] | None,
    cfg: OutputConfig,
    outputs: Mapping[str, Any] | None = None,
) -> list[str]:
    """The sections this run adds to its cards (empty strings dropped)."""
    parts = [render_teacher_table(dict(table)), student_section(student, cfg)]
    if outputs is not None:
        parts.append(selection_section(outputs, cfg))
    return [p for p in parts if p]
