"""Record types that flow between stages, and their Arrow schemas.

Every stage reads and writes rows of one of two shapes: :class:`Problem`
(before generation) or :class:`Sample` (from generation on). A sample carries
a copy of its problem's prompt and reference so that each later stage can work
on one row at a time, which is what lets the same stage run under
``datasets.map`` or Ray Data's ``map_batches``.

Identities are content hashes, never row numbers, so reruns and caches line up.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

import datasets
import pyarrow as pa

Domain = Literal["math", "code", "general"]
DOMAINS: tuple[str, ...] = ("math", "code", "general")

ROLE_STUDENT = "student"
"""``Sample.role`` of the student's samples (stage ``student``); teachers' are ``teacher``."""

MESSAGES = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})


def column_values(data: datasets.Dataset, name: str) -> list[Any]:
    """One column of a dataset as a Python list, read through Arrow.

    ``data[name]`` is a lazy column in ``datasets`` 4+: iterating it formats one row
    at a time, which cost seconds per 10k rows in the report and the funnel
    (issue 19). Index mappings (``select``, ``filter``) are honoured.
    """
    return data.with_format("arrow")[name].to_pylist()


def arrow_columns(data: datasets.Dataset, names: Sequence[str]) -> pa.Table:
    """The columns of ``names`` that ``data`` has, as one Arrow table (no Python rows).

    Index mappings (``select``, ``filter``) are honoured; without one this is a
    zero-copy view of the memory-mapped data.
    """
    present = [n for n in names if n in data.column_names]
    return data.select_columns(present).with_format("arrow")[:]


def arrow_rows(data: datasets.Dataset, batch_size: int = 4096) -> Iterator[dict[str, Any]]:
    """``data``'s rows as dicts, converted a batch at a time through Arrow.

    Iterating a ``datasets.Dataset`` formats every row on its own, several times slower.
    """
    for table in data.with_format("arrow").iter(batch_size=batch_size):
        yield from table.to_pylist()


def content_hash(*parts: Any, length: int = 16) -> str:
    """Stable short hash of JSON-serialisable parts (keys sorted)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    """A record type's fields (``dataclasses.fields``: without the ClassVars), once per type."""
    return tuple(f.name for f in fields(cls))


@functools.cache
def _field_set(cls: type) -> frozenset[str]:
    return frozenset(_field_names(cls))


def _copied(value: Any) -> Any:
    """A copy of a record field's value that shares nothing mutable with it."""
    if isinstance(value, list):
        return [dict(v) if isinstance(v, dict) else v for v in value]
    if isinstance(value, dict):
        return dict(value)
    return value


class _Record:
    """Shared (de)serialisation: dict columns are stored as JSON strings."""

    JSON_FIELDS: ClassVar[tuple[str, ...]] = ()
    FEATURES: ClassVar[datasets.Features]

    def to_row(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its recursive deep copy was most of the cost of writing
        # a streamed shard (benchmarks/bench_generate_stream.py). Our fields nest at most
        # a list of flat dicts (messages), copied here one level deep as asdict would.
        row = {name: _copied(getattr(self, name)) for name in _field_names(type(self))}
        for name in self.JSON_FIELDS:
            row[name] = json.dumps(row[name], ensure_ascii=False, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]):
        names = _field_set(cls)
        kwargs = {k: v for k, v in row.items() if k in names}
        for name in cls.JSON_FIELDS:
            value = kwargs.get(name)
            if isinstance(value, str):
                kwargs[name] = json.loads(value)
        return cls(**kwargs)


@dataclass
class Problem(_Record):
    """One prompt to distil, with what is needed to check answers to it."""

    id: str
    """Content hash of (domain, prompt messages); stable across reruns and file moves."""
    source: str
    """Where it came from, e.g. ``data/math_sample.jsonl`` or a Hub name."""
    domain: str
    """One of :data:`DOMAINS`; selects the verifier."""
    messages: list[dict[str, str]]
    """The prompt as chat messages (the system prompt is added at generation)."""
    reference: str | None = None
    """Answer (math), JSON test spec (code) or None (general)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Free-form source fields kept for provenance (level, subject, ...). ``options``
    (a list of strings, ``A`` first) holds a multiple-choice problem's options; the
    samples carry it as :attr:`Sample.options`."""
    keep: bool = True
    """False when a stage set this row aside (duplicate, contaminated, ...)."""
    reject_reason: str | None = None
    """Why ``keep`` is False, with the evidence in ``metadata``."""
    verifier: str | None = None
    """A route key of ``verify.routes`` that grades this problem instead of its domain's
    (a source's ``verifier``); None: the domain's route."""

    JSON_FIELDS: ClassVar[tuple[str, ...]] = ("metadata",)
    FEATURES: ClassVar[datasets.Features] = datasets.Features(
        {
            "id": datasets.Value("string"),
            "source": datasets.Value("string"),
            "domain": datasets.Value("string"),
            "messages": MESSAGES,
            "reference": datasets.Value("string"),
            "metadata": datasets.Value("string"),
            "keep": datasets.Value("bool"),
            "reject_reason": datasets.Value("string"),
            "verifier": datasets.Value("string"),
        }
    )

    @property
    def options(self) -> list[str] | None:
        """The options of a multiple-choice problem (``metadata["options"]``), else None.

        Raises:
            ValueError: ``options`` is not a list of strings (naming the problem).
        """
        options = self.metadata.get("options")
        if options is None:
            return None
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise ValueError(
                f"problem {self.id}: metadata.options must be a list of option texts "
                f"(A first), got {options!r}"
            )
        return list(options)

    @property
    def prompt(self) -> str:
        """The last user turn, which is what decontamination compares."""
        users = [m["content"] for m in self.messages if m["role"] == "user"]
        return users[-1] if users else ""

    @property
    def conversation_text(self) -> str:
        """What dedup compares: the last user turn, or every turn of a conversation.

        Two conversations ending in the same follow-up ("Explain more.") are not
        duplicates, so a prompt with earlier user or assistant turns is compared
        whole (system turns left out).
        """
        turns = [m for m in self.messages if m["role"] != "system"]
        if len(turns) <= 1:
            return self.prompt
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in turns)


@dataclass
class Verdict(_Record):
    """One verifier's judgement of one sample."""

    verifier: str
    verifier_version: str
    passed: bool | None
    """True/False, or None when unverifiable (timeout, bad reference)."""
    score: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    JSON_FIELDS: ClassVar[tuple[str, ...]] = ("details",)
    FEATURES: ClassVar[dict[str, Any]] = {
        "verifier": datasets.Value("string"),
        "verifier_version": datasets.Value("string"),
        "passed": datasets.Value("bool"),
        "score": datasets.Value("float64"),
        "details": datasets.Value("string"),
    }

    def to_row(self) -> dict[str, Any]:
        # ``_Record.to_row`` for these five fields, written out: verify writes one per
        # verdict of every sample, and the generic copy-then-dump was a third of it.
        return {
            "verifier": self.verifier,
            "verifier_version": self.verifier_version,
            "passed": self.passed,
            "score": self.score,
            "details": json.dumps(self.details, ensure_ascii=False, sort_keys=True),
        }


@dataclass
class Sample(_Record):
    """One teacher generation for one problem, plus everything judged about it."""

    id: str
    """Hash of (problem_id, teacher, model, sampling, sample_index)."""
    problem_id: str
    domain: str
    messages: list[dict[str, str]]
    """The problem's prompt (copied so that each row stands alone)."""
    reference: str | None
    teacher: str
    model: str
    sample_index: int
    reasoning: str | None = None
    """Thinking text when the teacher separates it, else None."""
    content: str = ""
    """The final answer text (everything outside the thinking)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    truncated: bool = False
    """True when generation stopped at ``max_tokens`` (finish reason ``length``)."""
    cost: float = 0.0
    request_key: str = ""
    """Cache key of the request that produced it."""
    error: str | None = None
    """Set when generation failed for good; the row is kept for the record."""
    verdicts: list[Verdict] = field(default_factory=list)
    passed: bool | None = None
    """The combined verdict of all verifiers."""
    keep: bool = True
    reject_reason: str | None = None
    source: str = ""
    """The problem's source (its ``name``, else its path)."""
    verifier: str | None = None
    """The problem's route override (:attr:`Problem.verifier`), copied."""
    options: list[str] | None = None
    """The problem's multiple-choice options (:attr:`Problem.options`), copied."""
    role: str = "teacher"
    """``teacher``, or ``student`` for the student's own samples (stage ``student``): those
    set the student pass rates and are never a teacher trace in an output."""

    FEATURES: ClassVar[datasets.Features] = datasets.Features(
        {
            "id": datasets.Value("string"),
            "problem_id": datasets.Value("string"),
            "domain": datasets.Value("string"),
            "messages": MESSAGES,
            "reference": datasets.Value("string"),
            "teacher": datasets.Value("string"),
            "model": datasets.Value("string"),
            "sample_index": datasets.Value("int32"),
            "reasoning": datasets.Value("string"),
            "content": datasets.Value("string"),
            "prompt_tokens": datasets.Value("int32"),
            "completion_tokens": datasets.Value("int32"),
            "finish_reason": datasets.Value("string"),
            "truncated": datasets.Value("bool"),
            "cost": datasets.Value("float64"),
            "request_key": datasets.Value("string"),
            "error": datasets.Value("string"),
            "verdicts": datasets.List(Verdict.FEATURES),
            "passed": datasets.Value("bool"),
            "keep": datasets.Value("bool"),
            "reject_reason": datasets.Value("string"),
            "source": datasets.Value("string"),
            "verifier": datasets.Value("string"),
            "options": datasets.List(datasets.Value("string")),
            "role": datasets.Value("string"),
        }
    )

    def to_row(self) -> dict[str, Any]:
        row = super().to_row()
        row["verdicts"] = [v.to_row() for v in self.verdicts]
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Sample:
        # What ``_Record.from_row`` does for both types, spelled out: emit builds one per
        # kept sample, and the generic path's extra dict copy and calls were a third of it.
        names = _field_set(cls)
        kwargs = {k: v for k, v in row.items() if k in names}
        kwargs["verdicts"] = [_verdict(v) for v in row.get("verdicts") or ()]
        return cls(**kwargs)


def _verdict(row: dict[str, Any]) -> Verdict:
    """``Verdict.from_row`` for the stored verdict struct (its five fields)."""
    if len(row) != 5 or "details" not in row:  # not the stored shape: the generic path
        return Verdict.from_row(row)
    details = row["details"]
    return Verdict(
        row["verifier"],
        row["verifier_version"],
        row["passed"],
        row["score"],
        json.loads(details) if isinstance(details, str) else details,
    )


RECORD_TYPES: dict[str, type[_Record]] = {"problem": Problem, "sample": Sample}
