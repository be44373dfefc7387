"""The funnel of a run: every count from rows read to rows emitted.

Counts come from the stage datasets and the manifest, not from in-memory
counters, so a resumed run reports the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets

from datagen.runner import StageResult


def build_summary(results: list[StageResult], run_dir: Path, wall_seconds: float) -> dict[str, Any]:
    """Summarise a finished run (also written to RUN_DIR/summary.json)."""
    rejects = run_dir / "rejects.jsonl"
    malformed = len(rejects.read_text(encoding="utf-8").splitlines()) if rejects.exists() else 0
    by_name = {r.name: r for r in results}
    summary: dict[str, Any] = {"malformed_rows": malformed}
    if "load" in by_name:
        summary["problems_loaded"] = by_name["load"].rows_out
        summary["rows_read"] = by_name["load"].rows_out + malformed
    summary["set_aside"] = {r.name: r.rows_set_aside for r in results if r.rows_set_aside}
    if "generate" in by_name:
        gen = by_name["generate"]
        summary["problems_generated"] = gen.rows_in
        summary["samples"] = gen.rows_out + gen.rows_set_aside
        summary["generation_failed"] = gen.rows_set_aside
    last_dirs = sorted((run_dir / "stages").glob("*"))
    if last_dirs and results and results[-1].rows_out and "generate" in by_name:
        final = datasets.load_from_disk(str(last_dirs[-1] / "data"))
        passed = final["passed"]
        summary["samples_kept"] = len(final)
        summary["positives"] = sum(p is True for p in passed)
        summary["negatives"] = sum(p is False for p in passed)
        summary["unverifiable"] = sum(p is None for p in passed)
        graded = summary["positives"] + summary["negatives"]
        summary["pass_rate"] = round(summary["positives"] / graded, 4) if graded else None
    outputs = run_dir / "outputs"
    for name in ("sft_positive", "sft_negative", "redi_pairs"):
        if (outputs / name / "arrow").exists():
            summary[name] = len(datasets.load_from_disk(str(outputs / name / "arrow")))
    summary["stages"] = {
        r.name: {
            "in": r.rows_in,
            "kept": r.rows_out,
            "set_aside": r.rows_set_aside,
            "seconds": r.seconds,
            "resumed": r.skipped,
            **({"stats": r.stats} if r.stats else {}),
        }
        for r in results
    }
    summary["wall_seconds"] = round(wall_seconds, 1)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """A small aligned table for the terminal."""
    keys = [
        ("rows read", "rows_read"),
        ("malformed rows (rejects.jsonl)", "malformed_rows"),
        ("problems loaded", "problems_loaded"),
        ("problems sent to teacher", "problems_generated"),
        ("samples", "samples"),
        ("generation failed", "generation_failed"),
        ("samples kept after filters", "samples_kept"),
        ("pass rate", "pass_rate"),
        ("positives", "sft_positive"),
        ("negatives", "sft_negative"),
        ("pairs", "redi_pairs"),
        ("wall time (s)", "wall_seconds"),
    ]
    lines = [f"  {label:<32} {summary[key]}" for label, key in keys if key in summary]
    for stage, n in summary.get("set_aside", {}).items():
        lines.append(f"  {'set aside by ' + stage:<32} {n}")
    return "datagen summary\n" + "\n".join(lines)
