"""Pages of memory-mapped Arrow files leave the process's RSS once released (issue 12)."""

from __future__ import annotations

import ctypes
import mmap
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from datagen.pages import PageReleaser, advise_pageout, arrow_mappings, release_mapped


def rss_file_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")


def test_only_read_only_arrow_mappings_are_listed():
    maps = "\n".join(
        [
            "7f0000000000-7f0000100000 r--s 00000000 08:01 12 /run/stages/03/data-0.arrow",
            "7f0000100000-7f0000200000 rw-s 00000000 08:01 13 /run/written.arrow",
            "7f0000200000-7f0000300000 r--p 00000000 08:01 14 /tmp/replay/t.arrow (deleted)",
            "7f0000300000-7f0000400000 r-xp 00000000 08:01 15 /usr/lib/libarrow.so.2600",
            "7f0000400000-7f0000500000 rw-p 00000000 00:00 0",
        ]
    )
    assert arrow_mappings(maps) == [
        (0x7F0000000000, 0x7F0000100000),
        (0x7F0000200000, 0x7F0000300000),
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc: Linux")
def test_release_drops_read_pages_and_keeps_the_data(tmp_path):
    path = tmp_path / "rows.arrow"
    table = pa.table({"text": pa.array([f"{i:06d}" + "x" * 9994 for i in range(8000)])})
    with pa.ipc.new_stream(str(path), table.schema) as writer:
        writer.write_table(table)
    del table
    mapped = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()
    before = rss_file_kb()
    assert pc.sum(pc.utf8_length(mapped["text"])).as_py() == 80_000_000  # reads every page
    read = rss_file_kb()
    assert read - before > 60_000, "reading 80 MB mapped should map most of it in"
    assert release_mapped() >= 80_000_000
    assert rss_file_kb() - before < 10_000
    assert mapped["text"][4321].as_py() == "004321" + "x" * 9994  # mapped in again, intact
    with PageReleaser(interval_s=0.01):  # the thread releases them with no call here
        assert pc.sum(pc.utf8_length(mapped["text"])).as_py() == 80_000_000
        deadline = time.monotonic() + 60  # generous: only a stuck thread misses it
        while rss_file_kb() - before > 10_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rss_file_kb() - before < 10_000


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise: Linux")
def test_advice_on_memory_that_is_no_longer_a_file_keeps_its_data():
    """The releaser advises ranges read from /proc/self/maps a moment earlier; if the file
    was unmapped since and heap memory took its address, the advice must not change it
    (MADV_DONTNEED zeroes private anonymous pages: this test fails with it)."""
    size = 64 * mmap.PAGESIZE
    heap = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    pattern = bytes(range(256)) * (size // 256)
    heap[:] = pattern
    lo = ctypes.addressof(ctypes.c_char.from_buffer(heap))
    assert advise_pageout(lo, lo + size)
    assert heap[:] == pattern
    heap.close()
