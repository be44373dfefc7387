"""A damaged or lost request cache: say so before anything is paid again, and salvage it.

``python -m datagen.teachers.cache salvage BROKEN NEW`` copies every entry that
can still be read out of ``BROKEN`` into a fresh cache file ``NEW``, page by
page, skipping what SQLite reports as corrupt; move ``NEW`` into place and
rerun. A cache that is missing or empty while the run's manifest says
responses were stored is reported as a warning, since the next generation
would pay for them again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datagen.config import ConfigError

logger = logging.getLogger(__name__)

GENERATING = ("generate", "generate_adaptive")
_STEP = 1000
"""Rows per read while salvaging; a corrupt page costs at most this many rows' read."""


class CacheDamaged(ConfigError):
    """The cache file is not a readable SQLite database (or fails its check)."""


def damaged_message(path: Path, detail: str) -> str:
    detail = " ".join(detail.replace("*** in database main ***", "").split())  # one line
    return (
        f"the request cache {path} is damaged ({detail}). Copy out what can still be read "
        f"with: python -m datagen.teachers.cache salvage {path} {path}.salvaged && "
        f"mv {path}.salvaged {path} (rerun then pays only for what was lost), or delete it "
        "to start over (every request is paid again)"
    )


def stored_by_manifest(run_dir: Path) -> int:
    """Responses the manifest says earlier generation stages stored (0 if it cannot tell)."""
    try:
        manifest = json.loads((Path(run_dir) / "manifest.json").read_text())
        stages = manifest["stages"]
        stored = 0
        for name in GENERATING:
            stats = stages.get(name, {}).get("stats", {})
            stored += max(0, int(stats.get("requests_sent", 0)) - int(stats.get("failed", 0)))
        return stored
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0


def count_entries(path: Path) -> int | None:
    """Entries in a cache file, None when it cannot be read (missing: 0)."""
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError as exc:
        return 0 if "no such table" in str(exc) else None
    except sqlite3.DatabaseError:
        return None


def warn_if_cache_lost(path: Path, run_dir: Path) -> bool:
    """Warn when the manifest says responses were stored but the cache has none."""
    stored = stored_by_manifest(run_dir)
    if not stored:
        return False
    entries = count_entries(path)
    if entries != 0:
        return False
    state = "missing" if not path.exists() else "empty"
    logger.warning(
        "the request cache %s is %s, but this run stored %d response(s) in it earlier: "
        "any generation that reruns will pay for them again. Stop now (Ctrl-C) and restore "
        "the file (or point teacher.cache_path at a copy) to avoid that.",
        path,
        state,
        stored,
    )
    return True


def salvage(src: Path, dst: Path, make_cache: Callable[[Path], Any]) -> tuple[int, int]:
    """Copy every readable entry of cache ``src`` into a new cache ``dst``.

    ``make_cache`` opens ``dst`` (``RequestCache``; passed in so that this module
    does not import the cache, which imports it).

    Returns:
        ``(entries copied, row ranges that could not be read)``.

    Raises:
        CacheDamaged: Nothing at all can be read (the file header is gone).
    """
    if dst.exists():
        raise ValueError(f"{dst} exists already; give a new file name")
    try:
        db = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
        top = db.execute("SELECT MAX(rowid) FROM responses").fetchone()[0] or 0
    except sqlite3.DatabaseError as exc:
        raise CacheDamaged(
            f"nothing in {src} can be read ({exc}); delete it to start over"
        ) from None
    out = make_cache(dst)
    copied = lost = 0
    try:
        for lo in range(0, top + 1, _STEP):
            try:
                rows = db.execute(
                    "SELECT key, value FROM responses WHERE rowid >= ? AND rowid < ?",
                    (lo, lo + _STEP),
                ).fetchall()
            except sqlite3.DatabaseError:
                rows = _rows_one_by_one(db, lo)
                lost += 1
            for key, value in rows:
                try:
                    out.put(key, json.loads(value))
                    copied += 1
                except (ValueError, TypeError):
                    continue
    finally:
        db.close()
        out.close()
    return copied, lost


def _rows_one_by_one(db: sqlite3.Connection, lo: int) -> list[tuple[str, str]]:
    rows = []
    for rowid in range(lo, lo + _STEP):
        try:
            row = db.execute(
                "SELECT key, value FROM responses WHERE rowid = ?", (rowid,)
            ).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row is not None:
            rows.append(row)
    return rows
