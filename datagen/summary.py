"""The funnel of a run: every count from rows read to rows emitted.

Counts come from the stage datasets and the manifest, not from in-memory
counters, so a resumed run reports the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc

from datagen import outcomes
from datagen.config import ANY_ROUTE, DatagenConfig
from datagen.output import OUTPUTS
from datagen.output.funnel import FUNNEL_COLUMNS, source_funnel
from datagen.output.publish import load_output, output_file
from datagen.records import ROLE_STUDENT, arrow_columns, column_values
from datagen.runner import StageResult
from datagen.stages import STAGES, Stage
from datagen.views import open_part


def is_generation(stage: Stage) -> bool:
    """The stage that turns problems into samples (its counts are the run's samples)."""
    return stage.consumes == "problem" and stage.produces == "sample"


def build_summary(
    results: list[StageResult], run_dir: Path, wall_seconds: float, config: DatagenConfig
) -> dict[str, Any]:
    """Summarise a finished run (also written to RUN_DIR/summary.json)."""
    rejects = run_dir / "rejects.jsonl"
    # One record per "\n": str.splitlines() would also split at U+2028 inside a record.
    malformed = rejects.read_bytes().count(b"\n") if rejects.exists() else 0
    by_name = {r.name: r for r in results}
    summary: dict[str, Any] = {"malformed_rows": malformed}
    declared = {r.name: STAGES[r.name] for r in results if r.name in STAGES}
    source = next((n for n, st in declared.items() if st.consumes == "none"), None)
    if source:
        summary["problems_loaded"] = by_name[source].rows_out
        summary["rows_read"] = by_name[source].rows_out + malformed
    summary["set_aside"] = {r.name: r.rows_set_aside for r in results if r.rows_set_aside}
    gen_name = next((n for n, st in declared.items() if is_generation(st)), None)
    stage_dirs = {d.name.split("_", 1)[1]: d for d in sorted((run_dir / "stages").glob("*_*"))}
    if gen_name:
        gen = by_name[gen_name]
        summary["problems_generated"] = gen.rows_in
        summary["samples"] = gen.rows_out + gen.rows_set_aside
        summary["generation_failed"] = gen.rows_set_aside
        summary["cost_usd"] = round(_stage_cost(stage_dirs[gen_name]), 6)
        summary |= outcomes.request_counts(results)
        summary["failed_top_reason"] = outcomes.failed_reason(stage_dirs[gen_name])
    if gen_name and results:
        final = open_part(stage_dirs[results[-1].name] / "data")
        if "role" in final.column_names:  # the student's samples are reported on their own
            roles = arrow_columns(final, ["role"]).column("role")
            teacher = pc.fill_null(pc.not_equal(roles, ROLE_STUDENT), True)
            if not pc.all(teacher).as_py():  # an index mapping, no cache file in the stage
                rows = np.flatnonzero(teacher.to_numpy(zero_copy_only=False))
                final = final.select(rows, keep_in_memory=True)
        passed = column_values(final, "passed")
        summary["samples_kept"] = len(final)
        summary["positives"] = sum(p is True for p in passed)
        summary["negatives"] = sum(p is False for p in passed)
        summary["unverifiable"] = sum(p is None for p in passed)
        summary["unverifiable_top_reason"] = outcomes.unverifiable_reason(final)
        no_route = outcomes.no_verifier_counts(final)  # counted in unverifiable too
        if no_route or config.verify.routes or config.verify.default_route != ANY_ROUTE:
            summary["no_verifier"] = no_route
        graded = summary["positives"] + summary["negatives"]
        summary["pass_rate"] = round(summary["positives"] / graded, 4) if graded else None
        if len(final):
            summary["cost_per_kept_sample_usd"] = round(summary["cost_usd"] / len(final), 8)
    outputs = run_dir / config.output.dir
    on_disk: dict[str, datasets.Dataset] = {}
    for name, spec in OUTPUTS.items():
        if output_file(outputs / name).exists():
            # the funnel counts rows per source and domain: only those columns are read
            on_disk[name] = load_output(outputs / name, columns=FUNNEL_COLUMNS)
            summary[name] = len(on_disk[name])
            if spec.summary_extra is not None:
                summary.update(spec.summary_extra(summary, summary[name]))
    if gen_name and results:
        ordered = [stage_dirs[r.name] for r in results if r.name in stage_dirs]
        domains = {s.label: s.domain for s in config.source_list()}
        summary["funnel"] = source_funnel(run_dir, ordered, domains, final, on_disk)
    for name, stage in declared.items():  # exact over the datasets, resumed or on Ray
        if stage.report is not None and name in stage_dirs:
            report = stage.report(stage_dirs[name], config)
            if report is not None:
                summary[stage.report_key or f"{name}_report"] = report
    notes = [
        note
        for name, stage in declared.items()
        if stage.summary_note is not None
        and (note := stage.summary_note(by_name[name].stats or {}, config))
    ]
    if notes:
        summary["notes"] = notes
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
            total += sum(column_values(open_part(stage_dir / part), "cost"))
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
        *[
            line
            for name, spec in OUTPUTS.items()
            for line in ((spec.summary_label or name, name), *spec.summary_extra_labels)
        ],
        ("teacher cost (USD)", "cost_usd"),
        ("cost per kept sample (USD)", "cost_per_kept_sample_usd"),
        ("wall time (s)", "wall_seconds"),
    ]
    lines = [f"  {label:<32} {summary[key]}" for label, key in keys if key in summary]
    lines += outcomes.outcome_lines(summary)
    for stage, n in summary.get("set_aside", {}).items():
        lines.append(f"  {'set aside by ' + stage:<32} {n}")
    by_source = (summary.get("funnel") or {}).get("by_source", {})
    for name, counts in by_source.items() if len(by_source) > 1 else ():
        shown = ", ".join(
            f"{k} {sum(v.values()) if isinstance(v, dict) else v}" for k, v in counts.items() if v
        )
        lines.append(f"  {'source ' + name:<32} {shown}")
    for example in (summary.get("dedup_report") or {}).get("examples", [])[:3]:
        members = ", ".join(f"{m['method']} {m['id']}" for m in example["members"])
        lines.append(f"  {'duplicate cluster':<32} kept {example['kept']['id']}: {members}")
    for item in (summary.get("contamination_report") or {}).get("items", []):
        lines.append(
            f"  {'contaminated':<32} {item['id']} ~ {item['benchmark']}/{item['item']} "
            f"({item['method']}, {item['score']})"
        )
    compared = (summary.get("teachers") or {}).get("teachers") or []
    for row in compared if len(compared) > 1 else []:
        lines.append(
            f"  {'teacher ' + row['teacher']:<32} pass rate {row['pass_rate']}, "
            f"{row['tokens_per_correct']} tokens and {row['cost_per_correct_usd']} USD per "
            f"correct answer, only solver on {row['only_solved_share']} of prompts"
        )
    student = summary.get("student") or {}
    if student:
        lines.append(
            f"  {'student ' + str(student['label']):<32} pass rate {student['pass_rate']} "
            f"({student['samples']} samples on {student['prompts']} prompts)"
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
    lines += [f"  note: {note}" for note in summary.get("notes", [])]
    return "datagen summary\n" + "\n".join(lines)
