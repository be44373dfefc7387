"""What the teacher and the verifier did in a run: requests, cache hits, failures and why.

The summary's funnel counts rows; this adds the questions a user asks first when
a run yields little: did the teacher get asked at all or was everything cached,
how many requests failed and with which error, and why samples were unverifiable.
Reasons are read from the stage datasets (``error`` on failed samples, the verdict
``details`` of unverifiable ones), so a resumed run reports them too.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow.compute as pc

from datagen.views import open_part

GENERATION_STAGES = ("generate", "generate_adaptive")

UNROUTED = "unrouted"
"""``Verdict.verifier`` of a sample whose route (domain or override) has no verifier
configured: unverifiable, with ``details = {"error": "no verifier for domain X", "route"}``."""

REASON_KEYS = ("error", "failure", "reason")
"""Verdict ``details`` keys that say why a verdict is unverifiable, most specific first."""


def top_reason(reasons: Iterable[str]) -> dict[str, Any] | None:
    """The most common reason and its count (None when there are none).

    >>> top_reason(["timeout", "no_code", "timeout"])
    {'reason': 'timeout', 'count': 2}
    """
    counts = Counter(reasons)
    if not counts:
        return None
    reason, count = counts.most_common(1)[0]
    return {"reason": reason, "count": count}


def verdict_reason(verdicts: Sequence[Mapping[str, Any]]) -> str:
    """Why a sample has no verdict: the last undecided verdict's error, failure or reason.

    An ensemble's own verdict holds only the vote, so its members' details are read
    too (latest first).
    """
    for verdict in reversed(verdicts):
        if verdict.get("passed") is not None:
            continue
        details = verdict.get("details") or {}
        if isinstance(details, str):
            details = json.loads(details)
        for key in REASON_KEYS:
            if details.get(key):
                return f"{verdict.get('verifier')}: {details[key]}"
    return "no reason recorded"


def request_counts(results: Sequence[Any]) -> dict[str, int]:
    """Requests sent and cache hits of the generation stages this process ran.

    A stage skipped because it finished earlier sent nothing now, so it adds 0.
    """
    sent = hits = 0
    for r in results:
        if r.name in GENERATION_STAGES and not r.skipped:
            sent += int(r.stats.get("requests_sent", 0))
            hits += int(r.stats.get("cache_hits", 0))
    return {"requests_sent": sent, "cache_hits": hits}


def failed_reason(stage_dir: Path) -> dict[str, Any] | None:
    """Most common error of the samples a generation stage could not get."""
    side = stage_dir / "set_aside"
    if not side.exists():
        return None
    errors = open_part(side).with_format("arrow")["error"].to_pylist()
    return top_reason(e for e in errors if e is not None)


def unverifiable_reason(final: datasets.Dataset) -> dict[str, Any] | None:
    """Most common reason among the samples of ``final`` with no verdict (``passed`` None)."""
    table = final.with_format("arrow").select_columns(["passed", "verdicts"])[:]
    unsure = table.filter(pc.is_null(table.column("passed")))  # read only those rows' verdicts
    return top_reason(verdict_reason(v) for v in unsure.column("verdicts").to_pylist())


def no_verifier_counts(final: datasets.Dataset) -> dict[str, int]:
    """Samples of ``final`` that no verifier graded (no route configured), by route key.

    The verdicts are flattened in Arrow and only the unrouted ones' details are read.
    """
    counts: Counter[str] = Counter()
    if not len(final):
        return {}
    verdicts = final.with_format("arrow").select_columns(["verdicts"])[:].column("verdicts")
    flat = pc.list_flatten(verdicts)
    unrouted = flat.filter(pc.equal(pc.struct_field(flat, "verifier"), UNROUTED))
    for details in pc.struct_field(unrouted, "details").to_pylist():
        details = details or {}
        if isinstance(details, str):
            details = json.loads(details)
        counts[str(details.get("route"))] += 1
    return dict(sorted(counts.items()))


def outcome_lines(summary: Mapping[str, Any], width: int = 32) -> list[str]:
    """Terminal lines for the keys :func:`datagen.summary.build_summary` adds from here."""
    lines = []
    if "requests_sent" in summary:
        lines.append(f"  {'requests sent to teacher':<{width}} {summary['requests_sent']}")
        lines.append(f"  {'answered from request cache':<{width}} {summary['cache_hits']}")
    for label, count_key, reason_key in (
        ("failed requests", "generation_failed", "failed_top_reason"),
        ("unverifiable samples", "unverifiable", "unverifiable_top_reason"),
    ):
        if count_key not in summary:
            continue
        top = summary.get(reason_key)
        why = f" (most common: {top['reason']}, {top['count']}x)" if top else ""
        lines.append(f"  {label:<{width}} {summary[count_key]}{why}")
    for route, count in (summary.get("no_verifier") or {}).items():
        lines.append(f"  {'no verifier for ' + route:<{width}} {count} (unverifiable)")
    return lines
