"""Turn verified samples into every declared training set (pure: no files, no network).

- ``sft_positive``: verified-correct traces, TRL conversational ``messages``.
- ``sft_negative``: verified-incorrect traces, same format.
- ``redi_pairs``: TRL conversational preference rows (``prompt``, ``chosen``,
  ``rejected``), chosen correct and rejected incorrect, from one prompt.

Each is declared (:class:`~datagen.output.formats.OutputSpec`) and built by
:mod:`datagen.output.sft` or :mod:`datagen.output.pairs` (a plug-in: its own module), then
cut to ``output.subset_sizes`` / ``output.domain_mix`` by
:mod:`datagen.output.subsets`. Writing, cards and the Hub live in
:mod:`datagen.output.card` and :mod:`datagen.output.publish`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
from datasets.arrow_writer import ArrowWriter

from datagen.config import OutputConfig
from datagen.output import curriculum  # noqa: F401  (registers the curriculum sets, last)
from datagen.output.difficulty import PassRateTally, pass_rates
from datagen.output.formats import (
    OUTPUTS,
    PAIR_FEATURES,
    SFT_FEATURES,
    OutputSpec,
    assistant_text,
    register_output,
)
from datagen.output.pairs import build_pairs  # registers redi_pairs
from datagen.output.sft import build_sft  # registers sft_positive, sft_negative
from datagen.output.student import teacher_samples, with_student_columns
from datagen.output.subsets import take_subset
from datagen.output.tokens import TokenCounter
from datagen.records import Sample

CHUNK_ROWS = 1024
"""Samples per chunk emit builds at once (rounded to whole prompts)."""


@dataclass
class BuiltOutput:
    """One output dataset and how it was built."""

    name: str
    dataset: datasets.Dataset
    stats: dict[str, Any] = field(default_factory=dict)
    """Build stats: rows, prompts, samples left out by reason, subset drawn."""

    @property
    def spec(self) -> OutputSpec:
        return OUTPUTS[self.name]

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def description(self) -> str:
        return self.spec.description


def build_outputs(
    samples: Sequence[Sample],
    cfg: OutputConfig,
    seed: int,
    counter: TokenCounter | None = None,
    student: bool = False,
) -> dict[str, BuiltOutput]:
    """Build every declared output (:data:`OUTPUTS`) that this run asks for.

    Args:
        samples: The samples that reached the outputs (kept by every earlier stage),
            the student's (``role="student"``) among them when a student is set.
        cfg: ``output`` config.
        seed: ``run.seed`` (pair draws, subsets).
        counter: Token counter (default: the teacher's counts).
        student: A student is set: every output gets its pass rates and PACED weight
            and its pass-rate filters, before any subset is drawn.

    Returns:
        Output name -> built dataset with its stats, in declaration order.

    Raises:
        ConfigError: A requested subset is larger than what was built.
    """
    counter = counter or TokenCounter()
    built = {
        name: build_one(spec, samples, cfg, seed, counter, student)
        for name, spec in OUTPUTS.items()
        if spec.when is None or spec.when(cfg)
    }
    return {name: _subset(name, ds, stats, cfg, seed) for name, (ds, stats) in built.items()}


def build_one(
    spec: OutputSpec,
    samples: Sequence[Sample],
    cfg: OutputConfig,
    seed: int,
    counter: TokenCounter,
    student: bool,
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """One output from whole prompts: its builder, then (with a student) the student's
    columns and pass-rate filters, which are per prompt too."""
    ds, stats = spec.build(samples, cfg, seed, counter)
    if student:
        ds, dropped = with_student_columns(ds, samples, cfg)
        left_out = {**stats.get("left_out", {}), **dropped}
        stats = {**stats, "rows": len(ds), "left_out": dict(sorted(left_out.items()))}
        stats["prompts"] = len(set(ds["problem_id"])) if len(ds) else 0
    return ds, stats


def _subset(
    name: str, ds: datasets.Dataset, stats: dict[str, Any], cfg: OutputConfig, seed: int
) -> BuiltOutput:
    """Cut a built output to ``output.subset_sizes`` / ``domain_mix`` (when asked)."""
    size = (cfg.subset_sizes or {}).get(name)
    ds, subset = take_subset(ds, size, cfg.domain_mix, seed, name)
    if subset:
        stats = {
            **stats,
            "rows": len(ds),
            "prompts": len(set(ds["problem_id"])),
            "subset": subset,
        }
    return BuiltOutput(name, ds, stats)


def build_outputs_by_prompt(
    chunks: Iterable[Sequence[Sample]],
    cfg: OutputConfig,
    seed: int,
    counter: TokenCounter | None,
    work: Path,
    tally: PassRateTally,
    student: bool = False,
) -> dict[str, BuiltOutput]:
    """:func:`build_outputs` over chunks of whole prompts, written to disk as they come.

    Every declared output's ``build`` runs on one chunk at a time (its rows go to a
    memory-mapped Arrow file under ``work``), so no more than one chunk of samples and
    rows is in memory. Builders work prompt by prompt, so with the chunks in the order
    of the data the rows are those of one call over everything, in the same order.
    Build stats are added up: counts sum (prompts are disjoint between chunks), nested
    counters merge, other values must agree.

    Args:
        chunks: Samples grouped by prompt (:func:`prompt_chunks`); no prompt in two chunks.
        cfg, seed, counter: As for :func:`build_outputs`.
        work: An empty folder for the outputs' Arrow files (kept while they are in use).
        tally: Receives every chunk, for the run's pass-rate summary.
    """
    counter = counter or TokenCounter()
    writers: dict[str, ArrowWriter] = {}
    stats: dict[str, dict[str, Any]] = {}
    seen = False
    for chunk in chunks:
        seen = True
        tally.add(teacher_samples(chunk))
        for name, spec in OUTPUTS.items():
            if spec.when is not None and not spec.when(cfg):
                continue
            ds, st = build_one(spec, chunk, cfg, seed, counter, student)
            if name not in writers:
                writers[name] = ArrowWriter(features=ds.features, path=str(work / f"{name}.arrow"))
                stats[name] = {}
            writers[name].write_table(ds.data.table)
            add_stats(stats[name], st)
    if not seen:
        return build_outputs([], cfg, seed, counter, student)
    out = {}
    for name, writer in writers.items():
        writer.finalize()
        writer.close()
        ds = datasets.Dataset.from_file(str(work / f"{name}.arrow"))
        out[name] = _subset(name, ds, stats[name], cfg, seed)
    return out


def add_stats(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Add one chunk's build stats into ``total`` (numbers sum, dicts merge)."""
    for key, value in part.items():
        if key not in total:
            total[key] = dict(value) if isinstance(value, dict) else value
        elif isinstance(value, dict):
            add_stats(total[key], value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] += value
        elif total[key] != value:
            raise ValueError(f"build stat {key!r} differs by prompt: {total[key]!r} {value!r}")
    if isinstance(total.get("left_out"), dict):  # sorted by reason, as one call sorts it
        total["left_out"] = dict(sorted(total["left_out"].items()))


def prompt_chunks(data: datasets.Dataset, rows: int | None = None) -> Iterator[list[Sample]]:
    """The samples of ``data`` (memory-mapped), about ``rows`` (default :data:`CHUNK_ROWS`) at
    a time, whole prompts each.

    Samples of one prompt are contiguous as ``generate`` writes them; data whose
    prompts are interleaved is read in order of each prompt's first row (stable), so
    a prompt's samples always arrive together.
    """
    if len(data):
        pids = data.with_format("arrow")["problem_id"]
        # Index of each row's prompt in order of first appearance: non-decreasing iff grouped.
        firsts = pc.index_in(pids, value_set=pc.unique(pids)).to_numpy(zero_copy_only=False)
        if np.any(np.diff(firsts) < 0):
            data = data.select(np.argsort(firsts, kind="stable"))
    held: list[Sample] = []
    for table in data.with_format("arrow").iter(batch_size=rows or CHUNK_ROWS):
        pending = held + [Sample.from_row(r) for r in table.to_pylist()]
        last, cut = pending[-1].problem_id, len(pending)
        while cut > 0 and pending[cut - 1].problem_id == last:
            cut -= 1  # the last prompt may go on in the next batch
        if cut:
            yield pending[:cut]
        held = pending[cut:]
    if held:
        yield held


__all__ = [
    "OUTPUTS",
    "PAIR_FEATURES",
    "SFT_FEATURES",
    "BuiltOutput",
    "OutputSpec",
    "assistant_text",
    "build_outputs",
    "build_outputs_by_prompt",
    "build_pairs",
    "build_sft",
    "pass_rates",
    "prompt_chunks",
    "register_output",
]
