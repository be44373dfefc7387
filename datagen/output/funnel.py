"""The funnel per source and per domain: where each source's rows went, from read to emitted.

Counted from what the run wrote (``rejects.jsonl``, each stage's kept and set-aside
datasets, the outputs), never from in-memory counters, so a resumed run reports
the same. The card and the summary show the same numbers; summed over sources
they are the run's own totals.

Per source (and per domain), in order::

    loaded        problems the load stage kept
    malformed     rows set aside as unreadable (rejects.jsonl)
    contaminated  problems set aside as benchmark leaks
    duplicate     problems set aside as repeats of a kept one
    set_aside     problems set aside by any other stage
    generated     problems sent to the teacher
    samples       samples generated (failed ones included)
    positive      samples kept by the filters and verified correct
    negative      samples kept by the filters and verified incorrect
    emitted       rows per output
    tokens        completion tokens the teacher wrote for this source
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import polars as pl

from datagen.records import arrow_columns
from datagen.views import is_part, open_part

FUNNEL_KEYS = (
    "loaded",
    "malformed",
    "contaminated",
    "duplicate",
    "set_aside",
    "generated",
    "samples",
    "positive",
    "negative",
    "emitted",
    "tokens",
)
"""The funnel's columns, in order."""


class Funnel:
    """Counts by source and by domain, filled from the run's files."""

    def __init__(self, source_domains: Mapping[str, str], outputs: Sequence[str]) -> None:
        self.source_domains = dict(source_domains)
        self.outputs = list(outputs)
        self.by_source: dict[str, dict[str, Any]] = {}
        self.by_domain: dict[str, dict[str, Any]] = {}

    def _rows(self, table: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
        if key not in table:
            table[key] = {k: 0 for k in FUNNEL_KEYS} | {"emitted": dict.fromkeys(self.outputs, 0)}
        return table[key]

    def add(self, source: str, domain: str | None, key: str, amount: int = 1) -> None:
        domain = domain or self.source_domains.get(source, "?")
        for table, name in ((self.by_source, source), (self.by_domain, domain)):
            self._rows(table, name)[key] += amount

    def add_emitted(self, output: str, source: str, domain: str, amount: int = 1) -> None:
        for table, name in ((self.by_source, source), (self.by_domain, domain)):
            emitted = self._rows(table, name)["emitted"]
            emitted[output] = emitted.get(output, 0) + amount

    def as_dict(self) -> dict[str, Any]:
        return {
            "by_source": dict(sorted(self.by_source.items())),
            "by_domain": dict(sorted(self.by_domain.items())),
        }


def _load(folder: Path, columns: Iterable[str]) -> datasets.Dataset | None:
    if not is_part(folder):
        return None
    ds = open_part(folder)
    wanted = [c for c in columns if c in ds.column_names]
    return ds.select_columns(wanted)


def _kind(reason: str | None) -> str:
    head = (reason or "").split(":", 1)[0].strip()
    return {"contaminated": "contaminated", "duplicate": "duplicate"}.get(head, "set_aside")


FUNNEL_COLUMNS = ("source", "domain", "completion_tokens")
"""What :func:`source_funnel` reads of an output."""


def groups(data: Any, columns: Sequence[str], *, pid: str | None = None) -> list[tuple]:
    """Rows of ``data`` counted per distinct value of ``columns``, by polars over Arrow.

    Returns:
        ``(*values, rows, tokens, prompts)`` per group: ``tokens`` sums
        ``completion_tokens`` when ``data`` has it (nulls as 0), ``prompts`` counts the
        distinct ``pid`` values; no Python object is made per row.
    """
    tables = [t for t in (data if isinstance(data, list) else [data]) if t is not None]
    wanted = [*columns, *([pid] if pid else []), "completion_tokens"]
    frames = [pl.from_arrow(arrow_columns(t, wanted)) for t in tables if len(t)]
    if not frames:
        return []
    frame = pl.concat(frames, how="diagonal_relaxed")
    aggs = [pl.len().alias("_rows")]
    if "completion_tokens" in frame.columns:
        aggs.append(pl.col("completion_tokens").fill_null(0).cast(pl.Int64).sum().alias("_t"))
    else:
        aggs.append(pl.lit(0).alias("_t"))
    aggs.append(pl.col(pid).n_unique().alias("_p") if pid else pl.lit(0).alias("_p"))
    return frame.group_by(list(columns), maintain_order=True).agg(aggs).rows()


def count_stage_dirs(funnel: Funnel, stage_dirs: Sequence[Path]) -> None:
    """Loaded, set aside, generated, samples and tokens from the stages' folders, in order."""
    sample_stage_seen = False
    for position, sdir in enumerate(stage_dirs):
        parts = sorted(p for p in sdir.iterdir() if p.is_dir() and not p.name.startswith("."))
        data = _load(sdir / "data", ("source", "domain", "problem_id"))
        if data is None:
            continue
        is_samples = "problem_id" in data.column_names
        if position == 0 and not is_samples:
            for src, dom, rows, _, _ in groups(data, ("source", "domain")):
                funnel.add(src, dom, "loaded", rows)
        sides = [p for p in parts if p.name != "data"]
        if not is_samples:
            for side in sides:
                ds = _load(side, ("source", "domain", "reject_reason"))
                for src, dom, why, rows, _, _ in groups(ds, ("source", "domain", "reject_reason")):
                    funnel.add(src, dom, _kind(why), rows)
            continue
        if sample_stage_seen:
            continue
        sample_stage_seen = True  # the generation stage: every sample it made
        cols = ("source", "domain", "problem_id", "completion_tokens")
        loaded = [_load(part, cols) for part in [sdir / "data", *sides]]
        for src, dom, rows, tokens, prompts in groups(
            loaded, ("source", "domain"), pid="problem_id"
        ):
            funnel.add(src, dom, "samples", rows)
            funnel.add(src, dom, "tokens", int(tokens))
            funnel.add(src, dom, "generated", prompts)


def count_rejects(funnel: Funnel, rejects: Path) -> None:
    """Malformed rows by source (a reject from before sources were named: ``?``)."""
    if not rejects.exists():
        return
    only = next(iter(funnel.source_domains)) if len(funnel.source_domains) == 1 else "?"
    with open(rejects, "rb") as fh:
        for line in fh:
            try:
                source = json.loads(line).get("source", only)
            except ValueError:
                source = only
            funnel.add(source, None, "malformed")


def source_funnel(
    run_dir: Path,
    stage_dirs: Sequence[Path],
    source_domains: Mapping[str, str],
    final: Any,
    outputs: Mapping[str, Any],
) -> dict[str, Any]:
    """The per-source and per-domain funnel of a run.

    Args:
        run_dir: The run directory (for ``rejects.jsonl``).
        stage_dirs: The pipeline's stage folders in order, up to (not including) the
            stage that is writing the outputs.
        source_domains: Each source's name -> its domain (in ``sources`` order).
        final: The samples that reached the outputs: a dataset or rows with ``source``,
            ``domain`` and ``passed``.
        outputs: Output name -> its dataset (``source`` and ``domain`` columns).

    Returns:
        ``{"by_source": {name: counts}, "by_domain": {domain: counts}}``, counts keyed by
        :data:`FUNNEL_KEYS` (``emitted`` is a mapping: output -> rows).
    """
    funnel = Funnel(source_domains, list(outputs))
    for name in source_domains:
        funnel._rows(funnel.by_source, name)
    count_rejects(funnel, Path(run_dir) / "rejects.jsonl")
    count_stage_dirs(funnel, stage_dirs)
    if isinstance(final, datasets.Dataset):
        for src, dom, passed, rows, _, _ in groups(final, ("source", "domain", "passed")):
            if passed is not None:
                funnel.add(src, dom, "positive" if passed else "negative", rows)
    else:
        for row in final:
            if row.passed is True:
                funnel.add(row.source, row.domain, "positive")
            elif row.passed is False:
                funnel.add(row.source, row.domain, "negative")
    for name, ds in outputs.items():
        if ds is None or not len(ds):
            continue
        for src, dom, rows, _, _ in groups(ds, ("source", "domain")):
            funnel.add_emitted(name, src, dom, rows)
    return funnel.as_dict()
