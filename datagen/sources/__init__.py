"""Read problems from local JSONL/JSON/Parquet files or Hub datasets.

Every input row ends up either as a :class:`~datagen.records.Problem` or as a
reject naming the file, the line (1-based) and the reason; nothing is dropped
silently.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datagen.config import ConfigError, SourceConfig
from datagen.records import Problem, content_hash

logger = logging.getLogger(__name__)


class MalformedRow(ValueError):
    """A row that could not even be parsed; keeps the raw text for the rejects file."""

    def __init__(self, reason: str, raw: str) -> None:
        super().__init__(reason)
        self.raw = raw


PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve_path(path: str) -> Path | None:
    """Find a local file: as given, else relative to the project root (bundled data)."""
    for candidate in (Path(path), PROJECT_ROOT / path):
        if candidate.exists():
            return candidate
    return None


def iter_raw_rows(cfg: SourceConfig) -> Iterator[tuple[str, int, Any]]:
    """Yield (file, line, row-or-exception) for every input row, malformed ones included."""
    path = resolve_path(cfg.path)
    if path is None:
        if cfg.path.endswith((".jsonl", ".json", ".parquet")):
            raise ConfigError(f"source.path: no such file: {cfg.path}")
        yield from _iter_hub(cfg)
        return
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield str(path), i, row
    elif path.suffix == ".json":
        for i, row in enumerate(json.loads(path.read_text(encoding="utf-8")), start=1):
            yield str(path), i, row
    else:
        with open(path, encoding="utf-8") as fh:
            for i, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield str(path), i, json.loads(line)
                except json.JSONDecodeError as exc:
                    reason = f"bad JSON: {exc.msg} at column {exc.colno}"
                    yield str(path), i, MalformedRow(reason, line.rstrip("\n"))


def _iter_hub(cfg: SourceConfig) -> Iterator[tuple[str, int, Any]]:
    import datasets

    ds = datasets.load_dataset(cfg.path, split=cfg.split)
    for i, row in enumerate(ds, start=1):
        yield f"{cfg.path}:{cfg.split}", i, row


def to_problem(row: Any, cfg: SourceConfig, system_prompt: str | None) -> Problem:
    """Map one raw row to a Problem; raise ValueError naming the bad field."""
    if isinstance(row, Exception):
        raise row
    if not isinstance(row, dict):
        raise ValueError(f"row is a {type(row).__name__}, expected an object")
    prompt = row.get(cfg.prompt_field)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"field '{cfg.prompt_field}' is missing, empty or not a string")
    reference = None
    if cfg.reference_field is not None:
        reference = row.get(cfg.reference_field)
        if reference is None:
            raise ValueError(f"field '{cfg.reference_field}' is missing")
        if isinstance(reference, (int, float)) and not isinstance(reference, bool):
            reference = str(reference)
        elif not isinstance(reference, str):
            reference = json.dumps(reference, ensure_ascii=False)
    messages = [{"role": "user", "content": prompt}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    source_id = row.get(cfg.id_field) if cfg.id_field else None
    metadata = {k: row.get(k) for k in cfg.metadata_fields if k in row}
    if source_id is not None:
        metadata["source_id"] = str(source_id)
    return Problem(
        id=content_hash(cfg.domain, messages),  # not the path: same prompt, same id
        source=cfg.path,
        domain=cfg.domain,
        messages=messages,
        reference=reference,
        metadata=metadata,
    )


def read_problems(
    cfg: SourceConfig, system_prompt: str | None, limit: int | None = None
) -> tuple[list[Problem], list[dict[str, Any]]]:
    """Read up to ``limit`` valid problems; return them and the rejected rows.

    Rows past the limit are not read at all, so they are neither kept nor
    rejected: the summary reports the limit instead.
    """
    problems: list[Problem] = []
    rejects: list[dict[str, Any]] = []
    for file, line, row in iter_raw_rows(cfg):
        if limit is not None and len(problems) >= limit:
            break
        try:
            problems.append(to_problem(row, cfg, system_prompt))
        except ValueError as exc:
            logger.warning("%s:%d: set aside: %s", file, line, exc)
            raw = getattr(row, "raw", None) if isinstance(row, Exception) else row
            rejects.append({"file": file, "line": line, "reason": str(exc), "row": raw})
    return problems, rejects
