"""A content-addressed, crash-safe store of teacher responses.

Each response is committed to SQLite (WAL mode) the moment it arrives, keyed
by a hash of everything that shaped it (who answered: the backend and its
endpoint or weights, or a ``teacher.cache_namespace``; model, messages,
sampling options, sample index and seed; see
:func:`datagen.teachers.base.request_key`). A
rerun, a resume after ``kill -9``, or a new run that shares the cache file
asks the teacher only for what is missing: paid-for generations are never
requested twice. Failures are not stored, so a later run retries them.

Inspect a cache file (hits and misses are summed over the runs that used it)::

    python -m datagen.teachers.cache runs/math/cache/requests.sqlite
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datagen.teachers.cache_repair import CacheDamaged, damaged_message, salvage

logger = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS responses ("
    " key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
KEY_FORMAT = 2
"""Version of the request keys this datagen writes. Format 2 added who answered (the
backend and endpoint, or ``teacher.cache_namespace``); format-1 entries, from files
written before, can never match a format-2 key."""
_CHUNK = 500
"""Keys per ``IN (...)`` lookup; SQLite allows at least 999 bound parameters."""


class RequestCache:
    """Key/value store of completed requests; safe to share between runs and processes.

    Args:
        path: The SQLite file (created with its folder if missing).
        check: Also read every page to find damage (:class:`CacheDamaged` names the fix).

    >>> import tempfile, pathlib
    >>> cache = RequestCache(pathlib.Path(tempfile.mkdtemp()) / "c.sqlite")
    >>> cache.put("k", {"text": "hi"}); cache.get("k"), cache.get("other")
    ({'text': 'hi'}, None)
    >>> cache.stats()["entries"], cache.hits, cache.misses
    (1, 1, 1)
    """

    def __init__(self, path: str | Path, *, check: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
        try:
            self._open(check)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise CacheDamaged(damaged_message(self.path, str(exc))) from None
        self.legacy_entries = self._check_key_format()
        """Entries stored under an older key format: kept in the file, never matched."""
        self.hits = 0
        """Lookups answered by this process."""
        self.misses = 0
        """Lookups this process had to send to the teacher."""
        self.writes = 0
        self._flushed = (0, 0)

    def _open(self, check: bool) -> None:
        """Set the journal mode, check the file (every page when ``check``), create the tables.

        A file that is not a database fails at the first statement; a damaged page
        only under ``check`` (``PRAGMA quick_check`` reads the whole file, so the run's
        preflight does it once rather than every open).
        """
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives the process being killed (kill -9);
        # only a power cut can lose the last commits.
        self._db.execute("PRAGMA synchronous=NORMAL")
        if check:
            problem = self._db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if problem != "ok":
                raise sqlite3.DatabaseError(problem)
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._db.commit()

    def _check_key_format(self) -> int:
        """Stamp a new file with :data:`KEY_FORMAT`; warn about entries of an older format.

        A file without a stamp that already holds responses was written before keys
        named the backend: its entries are counted as legacy once (new entries are
        added beside them) and a WARNING says so on every open, since none is reused.
        """
        counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        if "key_format" not in counters:
            legacy = self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            self._db.executemany(
                "INSERT OR IGNORE INTO counters (name, value) VALUES (?, ?)",
                [("key_format", KEY_FORMAT), ("legacy_entries", legacy)],
            )
            self._db.commit()
            counters.update(key_format=KEY_FORMAT, legacy_entries=legacy)
        legacy = counters.get("legacy_entries", 0)
        if legacy:
            logger.warning(
                "%s holds %d responses stored by an older datagen, whose cache keys did not "
                "name the teacher's backend and endpoint; they are not reused, so those "
                "requests are sent again. Delete the file to drop them.",
                self.path,
                legacy,
            )
        return legacy

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored response for ``key``, or None (counted as a hit or a miss)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored responses for those of ``keys`` that are present (one query per 500 keys)."""
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for lo in range(0, len(unique), _CHUNK):
                chunk = unique[lo : lo + _CHUNK]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, value FROM responses WHERE key IN ({marks})"
                for key, value in self._db.execute(query, chunk):
                    found[key] = json.loads(value)
        self.hits += sum(1 for k in keys if k in found)
        self.misses += sum(1 for k in keys if k not in found)
        return found

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store one response and commit at once (durable before the next arrives)."""
        self.put_many([(key, value)])

    def put_many(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Store responses that arrived together in one transaction, committed before returning.

        A streaming teacher hands over everything that arrived since its last
        hand-over (one event-loop tick); one commit for them costs what one
        commit per response would cost for the first alone, and none waits for
        a later one, so a kill still loses only what was in flight.
        """
        if not items:
            return
        now = time.time()
        rows = [(key, json.dumps(value, ensure_ascii=False), now) for key, value in items]
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)", rows
            )
            self._db.commit()
            self.writes += len(rows)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def keys(self) -> list[str]:
        """Every stored key (for tests and inspection)."""
        with self._lock:
            return [k for (k,) in self._db.execute("SELECT key FROM responses")]

    def _flush_counters(self) -> None:
        """Add this process's new hits and misses to the lifetime counters in the file."""
        hits, misses = self.hits - self._flushed[0], self.misses - self._flushed[1]
        if not hits and not misses:
            return
        upsert = (
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value"
        )
        with self._lock:
            self._db.execute(upsert, ("hits", hits))
            self._db.execute(upsert, ("misses", misses))
            self._db.commit()
        self._flushed = (self.hits, self.misses)

    def stats(self) -> dict[str, Any]:
        """Hits and misses of this process and of all runs, entries and bytes on disk.

        Returns:
            ``{"hits", "misses", "lifetime_hits", "lifetime_misses", "key_format",
            "legacy_entries", "entries", "bytes", "oldest", "newest"}`` (times as Unix
            seconds).
        """
        self._flush_counters()
        with self._lock:
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
            entries, oldest, newest = self._db.execute(
                "SELECT COUNT(*), MIN(created), MAX(created) FROM responses"
            ).fetchone()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))
        return {
            "path": str(self.path),
            "hits": self.hits,
            "misses": self.misses,
            "lifetime_hits": counters.get("hits", 0),
            "lifetime_misses": counters.get("misses", 0),
            "key_format": counters.get("key_format", KEY_FORMAT),
            "legacy_entries": counters.get("legacy_entries", 0),
            "entries": entries,
            "bytes": size,
            "oldest": oldest,
            "newest": newest,
        }

    def close(self) -> None:
        """Record the counters and close the file (idempotent)."""
        if self._db is None:
            return
        with contextlib.suppress(sqlite3.Error):  # a read-only file: only counters are lost
            self._flush_counters()
        with self._lock:
            self._db.close()
            self._db = None  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    """CLI: print a cache file's statistics as JSON; ``salvage SRC DST`` copies one out."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["salvage"]:
        return _salvage_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m datagen.teachers.cache", description="Inspect a teacher request cache."
    )
    parser.add_argument(
        "path", type=Path, help="the cache file, e.g. RUN_DIR/cache/requests.sqlite"
    )
    args = parser.parse_args(argv)
    if not args.path.exists():
        print(f"no such cache file: {args.path}", file=sys.stderr)
        return 2
    try:
        cache = RequestCache(args.path, check=True)
    except CacheDamaged as exc:
        print(exc, file=sys.stderr)
        return 2
    stats = cache.stats()
    cache.close()
    for key in ("hits", "misses"):  # this process looked nothing up
        stats.pop(key)
    print(json.dumps(stats, indent=2))
    return 0


def _salvage_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datagen.teachers.cache salvage",
        description="Copy every readable entry of a damaged cache into a new file.",
    )
    parser.add_argument("src", type=Path, help="the damaged cache file")
    parser.add_argument("dst", type=Path, help="the new cache file to write (must not exist)")
    args = parser.parse_args(argv)
    try:
        copied, lost = salvage(args.src, args.dst, RequestCache)
    except (CacheDamaged, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps({"copied": copied, "unreadable_ranges": lost, "to": str(args.dst)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
