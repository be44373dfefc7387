"""Teacher ``replay``: samples read from an existing dataset of traces, not generated.

Already-distilled data (a local JSONL/JSON/Parquet file, or a Hub dataset such
as OpenR1-Math with several generations per problem) flows through the same
verify, dedup, filter and pairing stages as fresh generations, without paying
for them again. The REDI paper built its 131k examples this way from open traces.

Traces are matched to problems by prompt text (whitespace-normalised, last
user turn), so the problems can come from the same file (``source.path`` set
to it, with the ``dedup`` stage folding its repeated prompts) or from another.
Sample ``i`` of a problem is its ``i``-th trace (ordered by ``order_field``
when given, else as read); a problem with fewer traces than
``generation.n`` gets failed samples saying so. A label that comes with the
data (``label_field``) is attached as a precomputed :class:`Verdict`; the
``verify`` stage adds our own beside it and decides ``passed``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from datagen.config import ConfigError, SamplingConfig, SourceConfig
from datagen.records import Problem, Sample, Verdict
from datagen.sources import iter_raw_rows
from datagen.teachers.base import (
    Completion,
    Request,
    Teacher,
    TeacherSpec,
    register_teacher,
)
from datagen.teachers.cache import RequestCache

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayTeacherConfig:
    """Where the traces are and which columns hold what (a row may hold one trace or a list)."""

    name: str = "replay"
    path: str = ""
    """Local .jsonl/.json/.parquet file or Hub dataset name (e.g. open-r1/OpenR1-Math-220k)."""
    split: str = "train"
    """Split to read when ``path`` is a Hub dataset."""
    model: str = "replay"
    """Name of the model that wrote the traces, recorded on every sample."""
    prompt_field: str = "problem"
    """Column with the problem text, matched against each problem's last user turn."""
    response_field: str = "response"
    """Column with the trace: a string, or a list of strings (OpenR1-Math: ``generations``)."""
    reasoning_field: str | None = None
    """Column with separate reasoning text, if the data keeps it apart; else ``<think>``
    blocks inside the response are split off."""
    label_field: str | None = None
    """Column with the data's own correctness label (bool or list of bool), imported as a
    verdict (``correct``; OpenR1-Math: ``correctness_math_verify``). None: no label."""
    label_name: str = "imported"
    """Verifier name of the imported verdict."""
    score_field: str | None = None
    """Column with a score stored on the imported verdict (e.g. a reward model's ``rm_score``)."""
    finish_reason_field: str | None = None
    """Column with finish reasons (str or list; OpenR1-Math: ``finish_reasons``)."""
    order_field: str | None = None
    """Column giving a trace's index within its problem (e.g. ``sample_idx``); None: as read."""
    detail_fields: list[str] = field(default_factory=list)
    """Columns copied into the imported verdict's details (e.g. ``pred``, ``id``)."""

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError(
                "teacher.path is required for teacher=replay: a traces file or Hub dataset, "
                "e.g. teacher.path=open-r1/OpenR1-Math-220k"
            )


@dataclass(frozen=True)
class Trace:
    """One stored generation and what the data says about it."""

    response: str
    reasoning: str | None = None
    label: bool | None = None
    score: float | None = None
    finish_reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def normalise_prompt(text: str) -> str:
    """Whitespace-insensitive matching key of a prompt."""
    return " ".join(text.split())


def _nth(value: Any, i: int, count: int) -> Any:
    """Element ``i`` of a list column, or the scalar itself for one-trace rows."""
    if isinstance(value, (list, tuple)):
        return value[i] if i < len(value) else None
    return value if count == 1 or i == 0 else None


class TraceStore:
    """Traces by normalised prompt, their text on disk (a memory-mapped Arrow file).

    A million long traces are tens of GB: only the index (a digest of each prompt and
    the row numbers of its traces, in order) stays in memory, and a trace is read from
    the file when a request asks for it.
    """

    COLUMNS: ClassVar[pa.Schema] = pa.schema(
        [
            ("response", pa.string()),
            ("reasoning", pa.string()),
            ("label", pa.bool_()),
            ("score", pa.float64()),
            ("finish_reason", pa.string()),
            ("details", pa.string()),
        ]
    )
    FLUSH: ClassVar[int] = 512
    """Traces buffered before a record batch is written."""

    def __init__(self) -> None:
        self._folder = tempfile.mkdtemp(prefix="datagen-replay-")
        self._path = os.path.join(self._folder, "traces.arrow")
        self._sink = pa.OSFile(self._path, "wb")
        self._writer: pa.ipc.RecordBatchStreamWriter | None = pa.ipc.new_stream(
            self._sink, self.COLUMNS
        )
        self._buffer: list[dict[str, Any]] = []
        self._rows = 0
        self._keyed: dict[bytes, list[tuple[Any, int, int]]] = {}
        self.index: dict[bytes, list[int]] = {}
        self._table: pa.Table | None = None
        self._batches: list[pa.RecordBatch] = []
        self._starts = np.zeros(0, np.int64)
        """First row of each record batch of the mapped file."""
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._folder, True)

    @staticmethod
    def key(prompt: str) -> bytes:
        return hashlib.sha256(normalise_prompt(prompt).encode("utf-8")).digest()[:16]

    def add(self, key: bytes, sort_key: Any, seen: int, trace: Trace) -> None:
        """Store ``trace`` under a prompt's :meth:`key` (hashed once per row by the caller)."""
        row = {f: getattr(trace, f) for f in self.COLUMNS.names if f != "details"}
        row["details"] = json.dumps(trace.details, ensure_ascii=False) if trace.details else None
        self._buffer.append(row)
        self._keyed.setdefault(key, []).append((sort_key, seen, self._rows))
        self._rows += 1
        if len(self._buffer) >= self.FLUSH:
            self._flush()

    def touch(self, key: bytes) -> None:
        """Record a prompt (by :meth:`key`) with no usable trace (known, with zero traces)."""
        self._keyed.setdefault(key, [])

    def _flush(self) -> None:
        if self._buffer and self._writer is not None:
            self._writer.write_batch(pa.RecordBatch.from_pylist(self._buffer, self.COLUMNS))
        self._buffer = []

    def finish(self) -> None:
        """Close the file, memory-map it and order each prompt's traces."""
        self._flush()
        assert self._writer is not None
        self._writer.close()
        self._sink.close()
        self._writer = None
        self._table = pa.ipc.open_stream(pa.memory_map(self._path)).read_all()
        self._batches = self._table.to_batches()
        self._starts = np.cumsum([0] + [b.num_rows for b in self._batches[:-1]], dtype=np.int64)
        self.index = {
            k: [row for _, _, row in sorted(v, key=lambda x: (x[0], x[1]))]
            for k, v in self._keyed.items()
        }
        self._keyed = {}

    def rows(self, prompt: str) -> list[int]:
        return self.index.get(self.key(prompt), [])

    def trace(self, row: int) -> Trace:
        return self.traces([row])[0]

    def take(self, rows: Sequence[int]) -> pa.Table:
        """The trace rows at ``rows``, in that order, read record batch by record batch.

        ``Table.take`` over a chunked column first concatenates all of its chunks: a
        copy of every stored trace for each batch of requests (issue 12: the whole
        replay file in memory at a million traces). Here each record batch gives only
        the rows asked of it, so memory holds the rows asked for.
        """
        assert self._table is not None
        wanted = np.asarray(rows, np.int64)
        if not len(wanted):
            return self._table.slice(0, 0)
        chunk = np.searchsorted(self._starts, wanted, side="right") - 1
        order = np.argsort(chunk, kind="stable")
        by_chunk = chunk[order]
        parts = []
        for run in np.split(order, np.flatnonzero(np.diff(by_chunk)) + 1):
            c = chunk[run[0]]
            local = wanted[run] - self._starts[c]
            parts.append(pa.Table.from_batches([self._batches[c].take(pa.array(local))]))
        grouped = pa.concat_tables(parts)  # rows in order[...]; put back in asked order
        return grouped.take(pa.array(np.argsort(order, kind="stable")))

    def traces(self, rows: Sequence[int]) -> list[Trace]:
        """The traces at ``rows``, read from the mapped file in one ``take`` (issue 19:
        one slice per trace was most of a replay's generate stage)."""
        out = []
        for values in self.take(rows).to_pylist():
            raw = values.pop("details")
            out.append(Trace(**values, details=json.loads(raw) if raw else {}))
        return out

    def __len__(self) -> int:
        return len(self.index)

    def count(self) -> int:
        return self._rows


def read_traces(cfg: ReplayTeacherConfig) -> tuple[TraceStore, int]:
    """Index the traces by normalised prompt.

    Args:
        cfg: The replay config.

    Returns:
        ``(the traces, number of unreadable rows skipped)``.
    """

    source = SourceConfig(path=cfg.path, split=cfg.split, prompt_field=cfg.prompt_field)
    store = TraceStore()
    skipped = 0
    seen = 0
    for file, line, row in iter_raw_rows(source):
        prompt = row.get(cfg.prompt_field) if isinstance(row, dict) else None
        responses = row.get(cfg.response_field) if isinstance(row, dict) else None
        if not isinstance(prompt, str) or responses is None:
            skipped += 1
            logger.warning(
                "%s:%d: no %s/%s, skipped", file, line, cfg.prompt_field, cfg.response_field
            )
            continue
        items = responses if isinstance(responses, (list, tuple)) else [responses]
        order = row.get(cfg.order_field) if cfg.order_field else None
        key = store.key(prompt)
        store.touch(key)
        for i, text in enumerate(items):
            if not isinstance(text, str):
                skipped += 1
                continue
            label = _nth(row.get(cfg.label_field), i, len(items)) if cfg.label_field else None
            score = _nth(row.get(cfg.score_field), i, len(items)) if cfg.score_field else None
            reasoning = (
                _nth(row.get(cfg.reasoning_field), i, len(items)) if cfg.reasoning_field else None
            )
            finish = (
                _nth(row.get(cfg.finish_reason_field), i, len(items))
                if cfg.finish_reason_field
                else None
            )
            details = {k: _nth(row.get(k), i, len(items)) for k in cfg.detail_fields if k in row}
            trace = Trace(
                response=text,
                reasoning=reasoning if isinstance(reasoning, str) else None,
                label=bool(label) if label is not None else None,
                score=float(score) if isinstance(score, (int, float)) else None,
                finish_reason=finish if isinstance(finish, str) else None,
                details=details,
            )
            sort_key = (order if isinstance(order, (int, float)) else seen, i)
            store.add(key, sort_key, seen, trace)
        seen += 1
    store.finish()
    return store, skipped


class ReplayTeacher(Teacher):
    """Serves stored traces through the teacher interface (no requests, no cache, no cost)."""

    name = "replay"

    def __init__(self, cfg: ReplayTeacherConfig, cache: RequestCache | None = None) -> None:
        super().__init__(cfg.model, None)  # nothing here is paid for: no cache
        if cache is not None:
            cache.close()
        self.cfg = cfg
        self.traces, self.skipped = read_traces(cfg)
        logger.info(
            "replay: %d prompts, %d traces from %s (%d rows skipped)",
            len(self.traces),
            self.traces.count(),
            cfg.path,
            self.skipped,
        )

    def key_extra(self) -> dict[str, Any] | None:
        return {"replay": self.cfg.path}

    def _lookup(self, requests: Sequence[Request]) -> list[tuple[int, Trace | None]]:
        """Each request's trace count for its prompt and its trace (None past the last),
        fetched in one read; a prompt's key is hashed once, not once per sample."""
        counts: list[int] = []
        wanted: list[int] = []
        found: dict[int, int] = {}
        last: tuple[Any, list[int]] | None = None
        for i, req in enumerate(requests):
            if last is None or last[0] is not req.messages:
                users = [m["content"] for m in req.messages if m.get("role") == "user"]
                last = (req.messages, self.traces.rows(users[-1] if users else ""))
            rows = last[1]
            counts.append(len(rows))
            if req.sample_index < len(rows):
                found[i] = len(wanted)
                wanted.append(rows[req.sample_index])
        traces = self.traces.traces(wanted) if wanted else []
        return [(counts[i], traces[found[i]] if i in found else None) for i in range(len(requests))]

    def _completion(self, req: Request, have: int, trace: Trace | None) -> Completion:
        if trace is None:
            error = (
                f"replay: {have} trace(s) for this prompt in {self.cfg.path}, "
                f"no sample {req.sample_index}"
            )
            return Completion("", error=error)
        return Completion(
            text=trace.response, reasoning=trace.reasoning, finish_reason=trace.finish_reason
        )

    def complete_many(
        self, requests: Sequence[Request], sampling: SamplingConfig
    ) -> Iterator[tuple[int, Completion]]:
        for i, (req, (have, trace)) in enumerate(
            zip(requests, self._lookup(requests), strict=True)
        ):
            yield i, self._completion(req, have, trace)

    def generate(
        self,
        problems: Sequence[Problem],
        sampling: SamplingConfig,
        base_seed: int,
        start_index: int = 0,
    ) -> list[Sample]:
        """The base class's samples, each trace read once for the whole batch (no cache:
        nothing is sent, so every request counts as sent, as there)."""
        requests = self.build_requests(problems, sampling, base_seed, start_index)
        owners = [p for p in problems for _ in range(sampling.n)]
        self.requests_sent += len(requests)
        out = []
        for problem, req, (have, trace) in zip(
            owners, requests, self._lookup(requests), strict=True
        ):
            c = self._completion(req, have, trace)
            if c.error is None:
                self.cost_spent += self.price.cost(c)
            out.append(self._sample(problem, req, c, trace))
        return out

    def _to_sample(self, problem: Problem, req: Request, c: Completion) -> Sample:
        return self._sample(problem, req, c, self._lookup([req])[0][1])

    def generate_table(
        self, problems: pa.Table, sampling: SamplingConfig, base_seed: int
    ) -> pa.Table:
        """:meth:`generate` over an Arrow batch of problems (:mod:`.replay_table`)."""
        from datagen.teachers.replay_table import generate_table

        return generate_table(self, problems, sampling, base_seed)

    def _sample(self, problem: Problem, req: Request, c: Completion, trace: Trace | None) -> Sample:
        sample = super()._to_sample(problem, req, c)
        if trace is not None and self.cfg.label_field is not None:
            sample.verdicts.append(
                Verdict(
                    verifier=self.cfg.label_name,
                    verifier_version=f"{self.cfg.path}:{self.cfg.label_field}",
                    passed=trace.label,
                    score=trace.score,
                    details=dict(trace.details),
                )
            )
            sample.passed = trace.label
        return sample


register_teacher(
    TeacherSpec(
        "replay", ReplayTeacherConfig, ReplayTeacher, default_batch_size=1024, uses_cache=False
    )
)
