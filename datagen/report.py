"""The run report: ``report.html`` and ``report.md`` in a run directory.

``python -m datagen.report RUN_DIR`` rebuilds both from what is on disk (the stage
datasets, the outputs, ``manifest.json``, ``rejects.jsonl``, ``config.yaml``), so the
report of a resumed run, or of a run copied elsewhere, says the same as the first one.
A run writes it at the end (:mod:`datagen.__main__`).

This module gathers the numbers (:func:`collect_report`); :mod:`datagen.report_render`
draws the plots and writes the two files. Duplicate clusters and contaminated items
come from the same functions the summary uses.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import datasets
import polars as pl
import yaml

from datagen.output.card import redact
from datagen.output.publish import load_output, output_file, output_rows
from datagen.records import column_values
from datagen.report_tables import disagreements, pass_rate_tables, problem_labels, sample_frame
from datagen.stages import STAGES
from datagen.views import open_part

logger = logging.getLogger(__name__)

GENERATE_STAGES = ("generate", "generate_adaptive")
VERIFY_STAGES = ("verify", "verify_groups")
OUTPUTS = ("sft_positive", "sft_negative", "redi_pairs")
EXAMPLE_CHARS = 6000
"""Longer example messages are cut to this many characters in the report."""


def load_stage(run_dir: Path, folder: str, part: str) -> datasets.Dataset | None:
    """A stage's ``data`` or side output, or None when the folder is not there."""
    path = Path(run_dir) / "stages" / folder / part
    return open_part(path) if path.exists() else None


def stage_folders(run_dir: Path) -> list[tuple[str, str]]:
    """``(stage name, folder name)`` of the run's finished stages, in pipeline order."""
    manifest = Path(run_dir) / "manifest.json"
    finished = json.loads(manifest.read_text())["stages"] if manifest.exists() else {}
    found = []
    for d in sorted((Path(run_dir) / "stages").glob("[0-9]*_*")):
        name = d.name.split("_", 1)[1]
        if name in finished and (d / "data").exists():
            found.append((name, d.name))
    return found


def side_part(run_dir: Path, folder: str) -> str | None:
    """The folder of the rows a stage set aside (``set_aside``, ``duplicates``, ...)."""
    for part in ("set_aside", "duplicates", "contaminated"):
        if (Path(run_dir) / "stages" / folder / part).exists():
            return part
    return None


def reason_category(reason: str | None) -> str:
    """The rule a reject reason names, without its numbers (``too long: 3 > 2`` -> ``too long``)."""
    return (reason or "unspecified").split(":", 1)[0].strip()


def outcome_counts(passed: Iterable[bool | None]) -> dict[str, int]:
    values = list(passed)
    return {
        "positive": sum(p is True for p in values),
        "negative": sum(p is False for p in values),
        "unverifiable": sum(p is None for p in values),
    }


def count_lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0


def build_funnel(run_dir: Path) -> list[dict[str, Any]]:
    """Every step from rows read to rows emitted, each counted from the datasets on disk.

    Returns:
        Rows ``{"key", "step", "count"}`` in pipeline order; ``key`` is stable
        (``read``, ``malformed``, ``contaminated``, ``duplicate``, ``generated``,
        ``failed``, ``positive``, ``negative``, ``unverifiable``, ``filtered:<reason>``,
        ``kept``, ``emitted:<output>``, ...) so tests and notebooks can look steps up.
    """
    run_dir = Path(run_dir)
    steps: list[dict[str, Any]] = []

    def add(key: str, step: str, count: int) -> None:
        steps.append({"key": key, "step": step, "count": int(count)})

    folders = stage_folders(run_dir)
    previous_rows = 0
    for name, folder in folders:
        data = load_stage(run_dir, folder, "data")
        assert data is not None  # stage_folders lists only stages with data
        part = side_part(run_dir, folder)
        aside = load_stage(run_dir, folder, part) if part else None
        n_aside = len(aside) if aside is not None else 0
        if name == "load":
            malformed = count_lines(run_dir / "rejects.jsonl")
            add("read", "rows read", len(data) + malformed)
            add("malformed", "malformed (rejects.jsonl)", malformed)
            add("loaded", "problems loaded", len(data))
        elif name == "decontaminate":
            add("contaminated", "contaminated (benchmark leaks)", n_aside)
        elif name == "dedup":
            add("duplicate", "duplicate prompts", n_aside)
        elif name in GENERATE_STAGES:
            add("sent", "problems sent to the teacher", previous_rows)
            add("generated", "samples generated", len(data) + n_aside)
            add("failed", "generation failed", n_aside)
            if name == "generate_adaptive":
                for key, n in outcome_counts(column_values(data, "passed")).items():
                    add(key, f"verified {key}", n)
        elif name in VERIFY_STAGES:
            for key, n in outcome_counts(column_values(data, "passed")).items():
                add(key, f"verified {key}", n)
            if n_aside:
                add(f"set_aside:{name}", f"set aside by {name}", n_aside)
        elif name == "dedup_samples":
            add("duplicate_samples", "duplicate samples", n_aside)
        elif name == "filter":
            reasons = Counter(
                reason_category(r) for r in (column_values(aside, "reject_reason") if aside else [])
            )
            add("filtered", "filtered", n_aside)
            for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
                add(f"filtered:{reason}", f"filtered: {reason}", n)
        elif name == "emit":
            add("kept", "samples kept for the outputs", len(data))
            for out in OUTPUTS:
                path = run_dir / "outputs" / out
                if output_file(path).exists():
                    add(f"emitted:{out}", f"emitted {out}", output_rows(path))
        elif n_aside:
            add(f"set_aside:{name}", f"set aside by {name}", n_aside)
        previous_rows = len(data)
    return steps


def _problems(run_dir: Path, folders: Sequence[tuple[str, str]]) -> datasets.Dataset | None:
    """The last problem-level stage's data before generation (the problems the samples answer)."""
    problems = None
    for name, folder in folders:
        if name in GENERATE_STAGES:
            break
        data = load_stage(run_dir, folder, "data")
        if data is not None and "problem_id" not in data.column_names:
            problems = data
    return problems


def cost_table(run_dir: Path, folders: Sequence[tuple[str, str]], funnel: list[dict]) -> dict:
    """Samples, tokens and teacher cost in total, per kept sample and per pair."""
    gen = next((f for n, f in folders if n in GENERATE_STAGES), None)
    parts = [load_stage(run_dir, gen, p) for p in ("data", "set_aside")] if gen else []
    rows = [p for p in parts if p is not None]
    samples = sum(len(p) for p in rows)
    prompt = sum(sum(column_values(p, "prompt_tokens")) for p in rows)
    completion = sum(sum(column_values(p, "completion_tokens")) for p in rows)
    tokens = prompt + completion
    cost = sum(sum(column_values(p, "cost")) for p in rows)
    counts = {r["key"]: r["count"] for r in funnel}
    table = {
        "samples": samples,
        "tokens": tokens,
        "completion_tokens": completion,
        "cost_usd": cost,
    }
    out: dict[str, Any] = {"total": table}
    for label, key in (
        ("per kept sample", "kept"),
        ("per SFT positive", "emitted:sft_positive"),
        ("per pair", "emitted:redi_pairs"),
    ):
        n = counts.get(key)
        if n:
            out[label] = {k: round(v / n, 6) for k, v in table.items()}
    return out


def token_lengths(run_dir: Path, final: pl.DataFrame) -> dict[str, list[int]]:
    """Response lengths of positives and negatives: the emitted SFT rows' token counts,
    else the teacher's completion tokens of the kept samples."""
    lengths: dict[str, list[int]] = {}
    for key, out in (("positives", "sft_positive"), ("negatives", "sft_negative")):
        path = run_dir / "outputs" / out
        if output_file(path).exists():
            tokens = load_output(path, columns=["response_tokens"])
            lengths[key] = column_values(tokens, "response_tokens")
    if not lengths:
        tokens = (
            final["completion_tokens"]
            if "completion_tokens" in final.columns
            else pl.Series([0] * len(final), dtype=pl.Int64)  # the record's default
        )
        lengths = {
            key: tokens.filter(final["passed"] == want).to_list()
            for key, want in (("positives", True), ("negatives", False))
        }
    return lengths


def _clip(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + " [...]"


def examples(run_dir: Path) -> dict[str, Any]:
    """One emitted positive, one negative and one pair (messages, cut to a readable size)."""
    found: dict[str, Any] = {}
    for key, out in (("positive", "sft_positive"), ("negative", "sft_negative")):
        path = run_dir / "outputs" / out
        if output_file(path).exists() and len(ds := load_output(path, ["messages"], limit=1)):
            found[key] = [{**m, "content": _clip(m["content"])} for m in ds[0]["messages"]]
    path = run_dir / "outputs" / "redi_pairs"
    columns = ["prompt", "chosen", "rejected"]
    if output_file(path).exists() and len(ds := load_output(path, columns, limit=1)):
        row = ds[0]
        found["pair"] = {
            k: [{**m, "content": _clip(m["content"])} for m in row[k]]
            for k in ("prompt", "chosen", "rejected")
        }
    return found


def collect_report(run_dir: Path) -> dict[str, Any]:
    """Everything the report shows, computed from the run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / "stages").is_dir():
        raise FileNotFoundError(
            f"{run_dir} is not a run directory (no stages/ folder); pass the folder a run "
            "wrote, e.g. runs/math"
        )
    folders = stage_folders(run_dir)
    config_path = run_dir / "config.yaml"
    config = redact(yaml.safe_load(config_path.read_text())) if config_path.exists() else {}
    final_data = load_stage(run_dir, folders[-1][1], "data") if folders else None
    final = sample_frame(final_data)
    edges = (config.get("output") or {}).get("difficulty_edges") or (0.3, 0.7)
    funnel = build_funnel(run_dir)
    report: dict[str, Any] = {
        "run_dir": str(run_dir),
        "pipeline": (config.get("pipeline") or {}).get("name"),
        "funnel": funnel,
        "stages": _stage_rows(run_dir),
        "pass_rates": pass_rate_tables(final, problem_labels(_problems(run_dir, folders)), edges),
        "token_lengths": token_lengths(run_dir, final),
        "cost": cost_table(run_dir, folders, funnel),
        "disagreements": disagreements(final_data if len(final) else None),
        "examples": examples(run_dir),
        "config": config,
    }
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    report["wall_seconds"] = summary.get("wall_seconds")
    report["stage_reports"] = stage_reports(folders, summary)
    return report


def stage_reports(folders: Sequence[tuple[str, str]], summary: dict[str, Any]) -> dict[str, Any]:
    """The sections that stages declare (``Stage.report``), by their ``report_key``.

    The run computed them into ``summary.json`` from the saved datasets (exact for
    resumed runs), so the report takes them from there and names no stage itself.
    """
    out: dict[str, Any] = {}
    for name, _ in folders:
        stage = STAGES.get(name)
        if stage is not None and stage.report is not None:
            key = stage.report_key or f"{name}_report"
            if summary.get(key) is not None:
                out[key] = summary[key]
    return out


def _stage_rows(run_dir: Path) -> list[dict[str, Any]]:
    manifest = run_dir / "manifest.json"
    stages = json.loads(manifest.read_text())["stages"] if manifest.exists() else {}
    return [
        {
            "stage": name,
            "in": s.get("rows_in"),
            "kept": s.get("rows_out"),
            "set aside": s.get("rows_set_aside"),
            "seconds": s.get("seconds"),
        }
        for name, s in stages.items()
    ]


def write_report(run_dir: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into ``run_dir``; return their paths."""
    from datagen.report_render import render_html, render_markdown

    data = collect_report(Path(run_dir))
    html_path, md_path = Path(run_dir) / "report.html", Path(run_dir) / "report.md"
    html_path.write_text(render_html(data), encoding="utf-8")
    md_path.write_text(render_markdown(data), encoding="utf-8")
    return html_path, md_path


def parse_markdown_table(markdown: str, heading: str) -> list[list[str]]:
    """The body rows of the first table under ``## heading`` (for tests and scripts)."""
    section = re.split(rf"^## {re.escape(heading)}\s*$", markdown, maxsplit=1, flags=re.M)
    if len(section) < 2:
        raise KeyError(f"no section '## {heading}' in the report")
    lines = [ln for ln in section[1].split("\n## ")[0].splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datagen.report", description="Rebuild report.html and report.md"
    )
    parser.add_argument("run_dir", type=Path, help="a run directory, e.g. runs/math")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    datasets.disable_progress_bars()
    try:
        html_path, md_path = write_report(args.run_dir)
    except FileNotFoundError as exc:
        logger.error("%s", exc)
        return 2
    print(f"{html_path}\n{md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
