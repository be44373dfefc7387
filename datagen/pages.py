"""Reclaim the pages of memory-mapped Arrow files that a run has read.

Every stage reads its rows through memory-mapped Arrow files (stage datasets,
views, the replay store). A page once read stays mapped into the process, and is
counted in its RSS, until the mapping closes, so a pass over a million 8 KB traces
raised the run's RSS by the 8 GB it had read (issue 12), though those pages are the
kernel's page cache, which it drops under memory pressure. ``madvise(MADV_PAGEOUT)``
(Linux 5.4 or later) on a read-only file mapping reclaims them now: they leave this
process's RSS (and the page cache, where no other process maps them), and the next
read brings them in again from the file. With :class:`PageReleaser` running, RSS
measures what the run holds, not what it has read.

Not ``MADV_DONTNEED``: the ranges come from ``/proc/self/maps`` read a moment before,
and a mapping another thread closes meanwhile may be replaced at the same address by
heap memory, which ``DONTNEED`` would zero (that corrupted a test session's memory).
``PAGEOUT`` is nondestructive on any memory: it never changes what a read returns.
Only read-only mappings of ``.arrow`` files are named, and only on Linux; elsewhere
:func:`release_mapped` does nothing.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from types import TracebackType

MADV_PAGEOUT = 21
"""Linux's ``madvise`` advice number for "reclaim these pages now" (nondestructive)."""
SUFFIXES = (".arrow",)
INTERVAL_S = 1.0
"""Seconds between two releases: the pages a run maps in meanwhile stay in RSS."""


def _madvise() -> ctypes._CFuncPtr | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _madvise()


def arrow_mappings(maps: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` address ranges of read-only ``.arrow`` file mappings in
    ``maps`` (the text of ``/proc/self/maps``), deleted files included."""
    ranges = []
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or "w" in parts[1]:
            continue
        path = parts[5].removesuffix(" (deleted)")
        if path.endswith(SUFFIXES):
            lo, hi = parts[0].split("-")
            ranges.append((int(lo, 16), int(hi, 16)))
    return ranges


def advise_pageout(lo: int, hi: int) -> bool:
    """Ask the kernel to reclaim the pages of ``[lo, hi)``; False where it refused (a
    range no longer mapped, or a kernel without ``MADV_PAGEOUT``)."""
    return _MADVISE is not None and _MADVISE(lo, hi - lo, MADV_PAGEOUT) == 0


def release_mapped() -> int:
    """Reclaim the resident pages of this process's read-only ``.arrow`` mappings.

    Returns:
        The bytes of mappings advised (their whole size, resident or not).
    """
    if _MADVISE is None:
        return 0
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            ranges = arrow_mappings(fh.read())
    except OSError:
        return 0
    advised = 0
    for lo, hi in ranges:
        if advise_pageout(lo, hi):  # a mapping closed since: ENOMEM
            advised += hi - lo
    return advised


class PageReleaser:
    """Calls :func:`release_mapped` every :data:`INTERVAL_S` from a daemon thread while
    in its ``with`` block (a no-op where ``madvise`` is not available)."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            release_mapped()

    def __enter__(self) -> PageReleaser:
        if _MADVISE is not None:
            self._thread = threading.Thread(target=self._loop, name="page-releaser", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
