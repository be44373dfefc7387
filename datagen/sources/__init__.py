"""Read problems from local JSONL/JSON/Parquet files or Hub datasets.

Every input row ends up either as a :class:`~datagen.records.Problem` or as a
reject naming the file, the line (1-based) and the reason; nothing is dropped
silently.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datagen.config import ConfigError, SourceConfig
from datagen.records import Problem, content_hash
from datagen.safetext import escape_text
from datagen.sources.readers import MalformedRow, iter_file, list_files, split_suffix

__all__ = [
    "MalformedRow",
    "SourceRead",
    "iter_raw_rows",
    "read_problems",
    "read_source",
    "read_sources",
    "resolve_path",
    "to_problem",
]

logger = logging.getLogger(__name__)


PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve_path(path: str) -> Path | None:
    """Find a local file: as given, else relative to the project root (bundled data)."""
    for candidate in (Path(path), PROJECT_ROOT / path):
        if candidate.exists():
            return candidate
    return None


def uses_datasets(cfg: SourceConfig) -> bool:
    """Whether ``cfg`` is read through ``datasets.load_dataset`` (see ``source.loader``)."""
    if cfg.loader != "auto":
        return cfg.loader == "datasets"
    return resolve_path(cfg.path) is None or cfg.config is not None or cfg.revision is not None


def iter_raw_rows(cfg: SourceConfig) -> Iterator[tuple[str, int, Any]]:
    """Yield (file, line, row-or-exception) for every input row, malformed ones included.

    ``source.path`` may be a file, a folder (every supported file in it, in name
    order) or a Hub dataset name; see :mod:`datagen.sources.readers`.
    """
    path = resolve_path(cfg.path)
    if path is None and cfg.loader != "datasets" and split_suffix(Path(cfg.path))[0] is not None:
        raise ConfigError(f"source.path: no such file: {cfg.path}")
    if uses_datasets(cfg):
        yield from _iter_hub(cfg)
        return
    if path is None:
        if split_suffix(Path(cfg.path))[0] is not None:
            raise ConfigError(f"source.path: no such file: {cfg.path}")
        yield from _iter_hub(cfg)
        return
    try:
        files = list_files(path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for file in files:
        yield from iter_file(file)


def _iter_hub(cfg: SourceConfig) -> Iterator[tuple[str, int, Any]]:
    from datagen.sources.hub import load_hub_dataset

    local = resolve_path(cfg.path)
    name = str(local) if local is not None else cfg.path
    ds = load_hub_dataset(name, cfg.split, cfg.config, cfg.revision, local=local is not None)
    where = ":".join(x for x in (cfg.path, cfg.config, cfg.split) if x)
    # An Arrow dataset, memory-mapped: rows are read a batch at a time, not all at once.
    for i, row in enumerate(ds, start=1):
        yield where, i, row


REFERENCE_RULE = "a reference must be text or a finite number (code: tests, a list or object)"
"""The rule, in full: text is kept; numbers become text (6 -> '6', 6.0 -> '6', 2.5 -> '2.5');
booleans, NaN and infinity are rejected; lists and objects are stored as JSON in the code
domain (they are tests) and rejected elsewhere."""


def convert_reference(value: Any, field_name: str, domain: str) -> str:
    """Turn a raw reference into text by the rule in :data:`REFERENCE_RULE`.

    >>> convert_reference(6, "answer", "math"), convert_reference(2.5, "answer", "math")
    ('6', '2.5')
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise ValueError(
            f"field '{field_name}' is a boolean ({json.dumps(value)}); {REFERENCE_RULE}"
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field '{field_name}' is {value}; {REFERENCE_RULE}")
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, (list, dict)) and domain == "code":
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    raise ValueError(f"field '{field_name}' is a {type(value).__name__}; {REFERENCE_RULE}")


def _check_storable(name: str, value: Any) -> None:
    """Refuse text that cannot be written as UTF-8 (a lone surrogate such as ``\\ud800``)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = escape_text(text[exc.start : exc.end])
        raise ValueError(
            f"field '{name}' holds an unpaired surrogate ({bad}) at character {exc.start}, "
            "which cannot be stored as UTF-8"
        ) from None


ROLES = ("system", "user", "assistant")


def to_messages(value: Any, field_name: str) -> list[dict[str, str]]:
    """Check a conversation (``source.messages_field``) and return it as plain messages.

    Raises:
        ValueError: Not a list of ``{role, content}`` with known roles and text, or the
            last turn is not the user's (the teacher answers the last user turn).
    """
    if not isinstance(value, list) or not value:
        raise ValueError(f"field '{field_name}' must be a non-empty list of messages")
    messages = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise ValueError(f"field '{field_name}'[{i}] is a {type(turn).__name__}, not a message")
        role, content = turn.get("role"), turn.get("content")
        if role not in ROLES:
            raise ValueError(f"field '{field_name}'[{i}].role is {role!r}; use one of {ROLES}")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"field '{field_name}'[{i}].content is missing, empty or not text")
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] != "user":
        raise ValueError(
            f"field '{field_name}': the last turn is {messages[-1]['role']!r}, but it must be "
            "the user's (the teacher answers the last user turn)"
        )
    return messages


def _prompt_messages(row: dict[str, Any], cfg: SourceConfig) -> list[dict[str, str]]:
    if cfg.messages_field is not None:
        messages = to_messages(row.get(cfg.messages_field), cfg.messages_field)
        for m in messages:
            _check_storable(cfg.messages_field, m["content"])
        return messages
    prompt = row.get(cfg.prompt_field)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"field '{cfg.prompt_field}' is missing, empty or not a string")
    _check_storable(cfg.prompt_field, prompt)
    return [{"role": "user", "content": prompt}]


def _options(row: dict[str, Any], field_name: str) -> list[str]:
    """The options as a list of texts, ``A`` first (a ``{A: .., B: ..}`` mapping is ordered)."""
    options = row.get(field_name)
    if isinstance(options, dict) and options:
        letters = [chr(ord("A") + i) for i in range(len(options))]
        if sorted(str(k).strip().upper() for k in options) != letters:
            raise ValueError(
                f"field '{field_name}': option keys must be the letters {letters[0]}-"
                f"{letters[-1]}, got {sorted(options)}"
            )
        options = [v for _, v in sorted(options.items(), key=lambda kv: str(kv[0]).upper())]
    if isinstance(options, list) and options and all(isinstance(o, str) for o in options):
        return options
    raise ValueError(
        f"field '{field_name}' must hold the options as a list of texts or a letter -> text "
        f"mapping, got {type(options).__name__}"
    )


def to_problem(row: Any, cfg: SourceConfig, system_prompt: str | None) -> Problem:
    """Map one raw row to a Problem; raise ValueError naming the bad field."""
    if isinstance(row, Exception):
        raise row
    if not isinstance(row, dict):
        raise ValueError(f"row is a {type(row).__name__}, expected an object")
    messages = _prompt_messages(row, cfg)
    reference = None
    if cfg.reference_field is not None:
        reference = row.get(cfg.reference_field)
        if reference is None:
            raise ValueError(f"field '{cfg.reference_field}' is missing")
        reference = convert_reference(reference, cfg.reference_field, cfg.domain)
        _check_storable(cfg.reference_field, reference)
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    source_id = row.get(cfg.id_field) if cfg.id_field else None
    metadata = {k: row.get(k) for k in cfg.metadata_fields if k in row}
    if source_id is not None:
        metadata["source_id"] = str(source_id)
    if cfg.options_field is not None:
        metadata["options"] = _options(row, cfg.options_field)
    _check_storable("metadata", metadata)
    return Problem(
        id=content_hash(cfg.domain, messages),  # not the path: same prompt, same id
        source=cfg.label,
        domain=cfg.domain,
        messages=messages,
        reference=reference,
        metadata=metadata,
        verifier=cfg.verifier,
    )


@dataclass
class SourceRead:
    """What reading a source gave: problems, rejects, and ids used for different rows."""

    problems: list[Problem] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    id_conflicts: list[dict[str, Any]] = field(default_factory=list)
    """One entry per row whose ``id_field`` value an earlier, different row already used."""
    not_sampled: dict[str, int] = field(default_factory=dict)
    """Valid problems left out by a source's ``limit``/``fraction`` sampling, by source."""


def _pick_key(seed: int, problem: Problem) -> int:
    """A problem's place in a seeded draw: from its content id, so stable across file moves."""
    return int(content_hash(seed, problem.id, length=16), 16)


class _Sampler:
    """A source's ``limit``/``fraction``: first N, a seeded fraction, or a seeded N (bottom-k)."""

    def __init__(self, cfg: SourceConfig, limit: int | None) -> None:
        self.fraction = cfg.fraction
        self.limit = cfg.limit if cfg.limit is not None else limit
        self.seeded = cfg.seed is not None and (cfg.limit is not None or cfg.fraction is not None)
        self.seed = cfg.seed if cfg.seed is not None else 0
        self.heap: list[tuple[int, int, Problem]] = []
        self.taken: list[Problem] = []
        self.left_out = 0
        self._order = 0

    def full(self) -> bool:
        """No more rows need reading (an unseeded limit reached)."""
        return not self.seeded and self.limit is not None and len(self.taken) >= self.limit

    def offer(self, problem: Problem) -> None:
        self._order += 1
        if self.fraction is not None:
            if _pick_key(self.seed, problem) < self.fraction * 16**16:
                self.taken.append(problem)
            else:
                self.left_out += 1
            return
        if not self.seeded or self.limit is None:
            self.taken.append(problem)
            return
        # Bottom-k by hash: the ``limit`` smallest keys, kept in a max-heap of size k.
        item = (-_pick_key(self.seed, problem), self._order, problem)
        if len(self.heap) < self.limit:
            heapq.heappush(self.heap, item)
        else:
            self.left_out += 1
            if item[0] > self.heap[0][0]:
                heapq.heapreplace(self.heap, item)

    def result(self) -> list[Problem]:
        if self.heap:  # in the order they were read
            return [p for _, _, p in sorted(self.heap, key=lambda t: t[1])]
        return self.taken


def read_source(
    cfg: SourceConfig, system_prompt: str | None, limit: int | None = None
) -> SourceRead:
    """Read up to ``limit`` valid problems, with every other row's reject.

    Rows past the limit are not read at all, so they are neither kept nor
    rejected: the summary reports the limit instead. Any exception raised while
    turning one row into a problem is that row's reject, never the run's end.
    ``cfg.limit`` (when set) replaces ``limit``; with ``cfg.seed``, every row is read
    and a seeded sample kept (:class:`_Sampler`).
    """
    out = SourceRead()
    sampler = _Sampler(cfg, limit)
    first_seen: dict[str, tuple[str, str, int]] = {}
    for file, line, row in iter_raw_rows(cfg):
        if sampler.full():
            break
        try:
            problem = to_problem(row, cfg, system_prompt)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            logger.warning("%s:%d: set aside: %s", escape_text(file), line, escape_text(reason))
            raw = getattr(row, "raw", None) if isinstance(row, Exception) else row
            out.rejects.append(
                {"file": file, "line": line, "reason": reason, "row": raw, "source": cfg.label}
            )
            continue
        sampler.offer(problem)
        source_id = problem.metadata.get("source_id")
        if source_id is None:
            continue
        digest = content_hash(problem.messages, problem.reference)
        seen = first_seen.setdefault(source_id, (digest, file, line))
        if seen[0] != digest:
            conflict = {
                "id": source_id,
                "file": file,
                "line": line,
                "first": f"{seen[1]}:{seen[2]}",
            }
            out.id_conflicts.append(conflict)
            logger.warning(
                "%s:%d: id %r was already used by a different row at %s; both are kept "
                "(problem ids are content hashes)",
                escape_text(file),
                line,
                escape_text(source_id),
                escape_text(conflict["first"]),
            )
    out.problems = sampler.result()
    if sampler.left_out:
        out.not_sampled[cfg.label] = sampler.left_out
    return out


def read_sources(sources: list[SourceConfig], limit: int | None = None) -> SourceRead:
    """Read every source in order into one pool (``limit``: at most that many in all).

    Each source keeps its own mapping, domain, system prompt and sampling; the
    pool's order is the sources' order, which is what ``dedup.keep=source_order``
    ranks by. One source is read exactly as :func:`read_source` reads it.
    """
    pooled = SourceRead()
    for cfg in sources:
        left = None if limit is None else limit - len(pooled.problems)
        if left is not None and left <= 0:
            break
        read = read_source(cfg, cfg.system_prompt, left)
        if left is not None and cfg.limit is not None:  # a source limit is capped by the pool's
            read.problems = read.problems[:left]
        pooled.problems.extend(read.problems)
        pooled.rejects.extend(read.rejects)
        pooled.id_conflicts.extend(read.id_conflicts)
        pooled.not_sampled.update(read.not_sampled)
    return pooled


def read_problems(
    cfg: SourceConfig, system_prompt: str | None, limit: int | None = None
) -> tuple[list[Problem], list[dict[str, Any]]]:
    """Read up to ``limit`` valid problems; return them and the rejected rows."""
    read = read_source(cfg, system_prompt, limit)
    return read.problems, read.rejects
