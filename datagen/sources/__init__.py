"""Read problems from local JSONL/JSON/Parquet files or Hub datasets.

Every input row ends up either as a :class:`~datagen.records.Problem` or as a
reject naming the file, the line (1-based) and the reason; nothing is dropped
silently.
"""

from __future__ import annotations

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


def iter_raw_rows(cfg: SourceConfig) -> Iterator[tuple[str, int, Any]]:
    """Yield (file, line, row-or-exception) for every input row, malformed ones included.

    ``source.path`` may be a file, a folder (every supported file in it, in name
    order) or a Hub dataset name; see :mod:`datagen.sources.readers`.
    """
    path = resolve_path(cfg.path)
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

    ds = load_hub_dataset(cfg.path, cfg.split)
    for i, row in enumerate(ds, start=1):
        yield f"{cfg.path}:{cfg.split}", i, row


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


def to_problem(row: Any, cfg: SourceConfig, system_prompt: str | None) -> Problem:
    """Map one raw row to a Problem; raise ValueError naming the bad field."""
    if isinstance(row, Exception):
        raise row
    if not isinstance(row, dict):
        raise ValueError(f"row is a {type(row).__name__}, expected an object")
    prompt = row.get(cfg.prompt_field)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"field '{cfg.prompt_field}' is missing, empty or not a string")
    _check_storable(cfg.prompt_field, prompt)
    reference = None
    if cfg.reference_field is not None:
        reference = row.get(cfg.reference_field)
        if reference is None:
            raise ValueError(f"field '{cfg.reference_field}' is missing")
        reference = convert_reference(reference, cfg.reference_field, cfg.domain)
        _check_storable(cfg.reference_field, reference)
    messages = [{"role": "user", "content": prompt}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    source_id = row.get(cfg.id_field) if cfg.id_field else None
    metadata = {k: row.get(k) for k in cfg.metadata_fields if k in row}
    if source_id is not None:
        metadata["source_id"] = str(source_id)
    _check_storable("metadata", metadata)
    return Problem(
        id=content_hash(cfg.domain, messages),  # not the path: same prompt, same id
        source=cfg.path,
        domain=cfg.domain,
        messages=messages,
        reference=reference,
        metadata=metadata,
    )


@dataclass
class SourceRead:
    """What reading a source gave: problems, rejects, and ids used for different rows."""

    problems: list[Problem] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    id_conflicts: list[dict[str, Any]] = field(default_factory=list)
    """One entry per row whose ``id_field`` value an earlier, different row already used."""


def read_source(
    cfg: SourceConfig, system_prompt: str | None, limit: int | None = None
) -> SourceRead:
    """Read up to ``limit`` valid problems, with every other row's reject.

    Rows past the limit are not read at all, so they are neither kept nor
    rejected: the summary reports the limit instead. Any exception raised while
    turning one row into a problem is that row's reject, never the run's end.
    """
    out = SourceRead()
    first_seen: dict[str, tuple[str, str, int]] = {}
    for file, line, row in iter_raw_rows(cfg):
        if limit is not None and len(out.problems) >= limit:
            break
        try:
            problem = to_problem(row, cfg, system_prompt)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            logger.warning("%s:%d: set aside: %s", escape_text(file), line, escape_text(reason))
            raw = getattr(row, "raw", None) if isinstance(row, Exception) else row
            out.rejects.append({"file": file, "line": line, "reason": reason, "row": raw})
            continue
        out.problems.append(problem)
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
    return out


def read_problems(
    cfg: SourceConfig, system_prompt: str | None, limit: int | None = None
) -> tuple[list[Problem], list[dict[str, Any]]]:
    """Read up to ``limit`` valid problems; return them and the rejected rows."""
    read = read_source(cfg, system_prompt, limit)
    return read.problems, read.rejects
