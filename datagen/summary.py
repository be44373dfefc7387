"""The funnel of a run: every count from rows read to rows emitted.

Counts come from the stage datasets and the manifest, not from in-memory
counters, so a resumed run reports the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets

from datagen import outcomes
from datagen.config import DatagenConfig
from datagen.runner import StageResult
from datagen.stages.adaptive import stage_report as adaptive_report
from datagen.stages.decontaminate import write_decontam_report
from datagen.stages.dedup import write_dedup_report


def build_summary(
    results: list[StageResult], run_dir: Path, wall_seconds: float, config: DatagenConfig
) -> dict[str, Any]:
    """Summarise a finished run (also written to RUN_DIR/summary.json)."""
    rejects = run_dir / "rejects.jsonl"
    malformed = len(rejects.read_text(encoding="utf-8").splitlines()) if rejects.exists() else 0
    by_name = {r.name: r for r in results}
    summary: dict[str, Any] = {"malformed_rows": malformed}
    if "load" in by_name:
        summary["problems_loaded"] = by_name["load"].rows_out
        summary["rows_read"] = by_name["load"].rows_out + malformed
    summary["set_aside"] = {r.name: r.rows_set_aside for r in results if r.rows_set_aside}
    gen_name = next((n for n in ("generate", "generate_adaptive") if n in by_name), None)
    stage_dirs = {d.name.split("_", 1)[1]: d for d in sorted((run_dir / "stages").glob("*_*"))}
    if gen_name:
        gen = by_name[gen_name]
        summary["problems_generated"] = gen.rows_in
        summary["samples"] = gen.rows_out + gen.rows_set_aside
        summary["generation_failed"] = gen.rows_set_aside
        summary["cost_usd"] = round(_stage_cost(stage_dirs[gen_name]), 6)
        summary |= outcomes.request_counts(results)
        summary["failed_top_reason"] = outcomes.failed_reason(stage_dirs[gen_name])
        if gen_name == "generate_adaptive":  # exact over the datasets, resumed or on Ray
            summary["adaptive"] = adaptive_report(stage_dirs[gen_name], config)
    if gen_name and results:
        final = datasets.load_from_disk(str(stage_dirs[results[-1].name] / "data"))
        passed = final["passed"]
        summary["samples_kept"] = len(final)
        summary["positives"] = sum(p is True for p in passed)
        summary["negatives"] = sum(p is False for p in passed)
        summary["unverifiable"] = sum(p is None for p in passed)
        summary["unverifiable_top_reason"] = outcomes.unverifiable_reason(final)
        graded = summary["positives"] + summary["negatives"]
        summary["pass_rate"] = round(summary["positives"] / graded, 4) if graded else None
        if len(final):
            summary["cost_per_kept_sample_usd"] = round(summary["cost_usd"] / len(final), 8)
    outputs = run_dir / "outputs"
    for name in ("sft_positive", "sft_negative", "redi_pairs"):
        if (outputs / name / "arrow").exists():
            summary[name] = len(datasets.load_from_disk(str(outputs / name / "arrow")))
    if "dedup" in stage_dirs and "dedup" in by_name:
        summary["dedup_report"] = write_dedup_report(stage_dirs["dedup"])
    if "decontaminate" in stage_dirs and "decontaminate" in by_name:
        summary["contamination_report"] = write_decontam_report(stage_dirs["decontaminate"])
    if summary.get("samples") and summary.get("redi_pairs"):
        summary["samples_per_pair"] = round(summary["samples"] / summary["redi_pairs"], 3)
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


def _stage_cost(stage_dir: Path) -> float:
    """Teacher cost of every sample a generation stage produced, kept or set aside."""
    total = 0.0
    for part in ("data", "set_aside"):
        if (stage_dir / part).exists():
            total += sum(datasets.load_from_disk(str(stage_dir / part))["cost"])
    return total


def format_summary(summary: dict[str, Any]) -> str:
    """A small aligned table for the terminal."""
    keys = [
        ("rows read", "rows_read"),
        ("malformed rows (rejects.jsonl)", "malformed_rows"),
        ("problems loaded", "problems_loaded"),
        ("problems sent to teacher", "problems_generated"),
        ("samples", "samples"),
        ("samples kept after filters", "samples_kept"),
        ("pass rate", "pass_rate"),
        ("positives", "sft_positive"),
        ("negatives", "sft_negative"),
        ("pairs", "redi_pairs"),
        ("samples per pair", "samples_per_pair"),
        ("teacher cost (USD)", "cost_usd"),
        ("cost per kept sample (USD)", "cost_per_kept_sample_usd"),
        ("wall time (s)", "wall_seconds"),
    ]
    lines = [f"  {label:<32} {summary[key]}" for label, key in keys if key in summary]
    lines += outcomes.outcome_lines(summary)
    for stage, n in summary.get("set_aside", {}).items():
        lines.append(f"  {'set aside by ' + stage:<32} {n}")
    for example in (summary.get("dedup_report") or {}).get("examples", [])[:3]:
        members = ", ".join(f"{m['method']} {m['id']}" for m in example["members"])
        lines.append(f"  {'duplicate cluster':<32} kept {example['kept']['id']}: {members}")
    for item in (summary.get("contamination_report") or {}).get("items", []):
        lines.append(
            f"  {'contaminated':<32} {item['id']} ~ {item['benchmark']}/{item['item']} "
            f"({item['method']}, {item['score']})"
        )
    adaptive = summary.get("adaptive") or {}
    if "fixed_n_at_max_samples" in adaptive:
        fixed = adaptive["fixed_n_at_max_samples"]
        lines.append(
            f"  {'samples per pairable prompt':<32} {adaptive['samples_per_pairable_prompt']} "
            f"adaptive vs {fixed['samples_per_pairable_prompt']} fixed-N (N={fixed['n']})"
        )
    lines += [
        f"  {'verifier disagreements':<32} {s['stats']['disagreements']}"
        for s in summary.get("stages", {}).values()
        if "disagreements" in s.get("stats", {})
    ]
    return "datagen summary\n" + "\n".join(lines)
