"""Light-R1's two-stage curriculum: a broad stage-1 SFT set and a small, hard stage-2 set.

Light-R1 trains first on a large set of verified traces, then on the few thousand
prompts its student still finds hard. Here (``output.curriculum: true``, which needs
a student):

- ``curriculum_stage1``: every row of ``sft_positive`` (same length selection and
  student pass-rate filters): the broad stage.
- ``curriculum_stage2``: the stage-1 rows of the prompts whose student pass rate is
  at most ``output.stage2_max_pass_rate`` and that have a usable verified-correct
  teacher trace (:func:`~datagen.output.student.stage2_selects`).

Both carry the student's columns (``pass_rate``, ``paced_weight``, ...), added with the
other outputs'; ``output.subset_sizes`` sizes them exactly like any output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets

from datagen.config import OutputConfig
from datagen.output import pairs  # noqa: F401  (redi_pairs is declared before these)
from datagen.output.formats import OutputSpec, register_output, sft_features
from datagen.output.sft import build_sft
from datagen.output.student import stage2_selects, student_stats
from datagen.output.tokens import TokenCounter
from datagen.records import Sample


def build_stage1(
    samples: Sequence[Sample], cfg: OutputConfig, seed: int, counter: TokenCounter
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """Stage 1: the verified-correct teacher traces (as ``sft_positive``)."""
    ds, stats = build_sft(samples, True, cfg, counter)
    return ds, {**stats, "stage": 1}


def build_stage2(
    samples: Sequence[Sample], cfg: OutputConfig, seed: int, counter: TokenCounter
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """Stage 2: stage-1 rows of the prompts the student still finds hard."""
    ds, stats = build_sft(samples, True, cfg, counter)
    student = student_stats(samples)
    chosen = {
        pid
        for pid in set(ds["problem_id"])
        if stage2_selects(
            student[pid].pass_rate if pid in student else None, True, cfg.stage2_max_pass_rate
        )
    }
    hard = ds.filter(lambda r: r["problem_id"] in chosen) if len(ds) else ds
    return hard, {
        **stats,
        "stage": 2,
        "rows": len(hard),
        "prompts": len(chosen),
        "stage1_prompts": len(set(ds["problem_id"])),
        "max_student_pass_rate": cfg.stage2_max_pass_rate,
    }


def _enabled(cfg: OutputConfig) -> bool:
    return cfg.curriculum


register_output(
    OutputSpec(
        "curriculum_stage1",
        "sft",
        "Curriculum stage 1 (broad, Light-R1): every verified-correct teacher trace kept.",
        build_stage1,
        sft_features,
        summary_label="curriculum stage 1",
        when=_enabled,
    )
)
register_output(
    OutputSpec(
        "curriculum_stage2",
        "sft",
        "Curriculum stage 2 (hard, Light-R1): prompts the student solves at most "
        "output.stage2_max_pass_rate of the time, with a verified-correct teacher trace.",
        build_stage2,
        sft_features,
        summary_label="curriculum stage 2",
        when=_enabled,
    )
)
