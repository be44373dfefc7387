"""Low-level readers: every row of every file, or a reject saying where and why.

A source may be one file or a folder of them, each ``.jsonl``, ``.json`` or
``.parquet``, optionally compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst``).
Bytes are decoded line by line, so one invalid UTF-8 byte costs one row, not
the file; a UTF-8 byte order mark is dropped; a JSON array is walked element
by element and every element is reported at the line where it starts; a
syntax error inside an array skips to the next element that parses. Whatever
goes wrong while reading one row (deep nesting, a codec error, anything)
becomes that row's :class:`MalformedRow`; only an unreadable *file* is a
single reject with line 0.
"""

from __future__ import annotations

import bisect
import bz2
import codecs
import gzip
import io
import json
import lzma
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

FORMATS = (".jsonl", ".json", ".parquet")
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")
_RAW_LIMIT = 2000
"""Characters of a malformed row's raw text kept in rejects.jsonl."""


class MalformedRow(ValueError):
    """A row that could not even be parsed; keeps the raw text for the rejects file."""

    def __init__(self, reason: str, raw: str) -> None:
        super().__init__(reason)
        self.raw = raw


def split_suffix(path: Path) -> tuple[str | None, str | None]:
    """``(format, compression)`` from a file name, e.g. ``("".jsonl", ".gz")``."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in COMPRESSIONS else None
    fmt = suffixes[-1] if suffixes and suffixes[-1] in FORMATS else None
    return fmt, compression


def is_supported(path: Path) -> bool:
    return split_suffix(path)[0] is not None


def list_files(path: Path) -> list[Path]:
    """The files a source path stands for: the file itself, or every supported file in a folder.

    Raises:
        ValueError: The folder holds no supported file, or the file's kind is unknown.
    """
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and is_supported(p))
        if not files:
            raise ValueError(
                f"source.path: the folder {path} holds no {'/'.join(FORMATS)} file "
                f"(optionally {'/'.join(COMPRESSIONS)} compressed)"
            )
        return files
    if not is_supported(path):
        raise ValueError(
            f"source.path: {path} is not a {'/'.join(FORMATS)} file "
            f"(optionally {'/'.join(COMPRESSIONS)} compressed)"
        )
    return [path]


def _open_zstd(path: Path) -> IO[bytes]:
    import zstandard

    # The zstd reader cannot iterate lines by itself; a buffered reader over it can.
    return io.BufferedReader(zstandard.open(path, "rb"))  # type: ignore[arg-type]


# Each opener's file is closed by the ``with`` in :func:`iter_file`.
_OPENERS: dict[str | None, Callable[[Path], IO[bytes]]] = {
    None: lambda p: open(p, "rb"),  # noqa: SIM115
    ".gz": lambda p: gzip.open(p, "rb"),  # noqa: SIM115
    ".bz2": lambda p: bz2.open(p, "rb"),  # noqa: SIM115
    ".xz": lambda p: lzma.open(p, "rb"),  # noqa: SIM115
    ".zst": _open_zstd,
}


def iter_file(path: Path) -> Iterator[tuple[str, int, Any]]:
    """Yield ``(file, line, row or MalformedRow)`` for every row of one file."""
    fmt, compression = split_suffix(path)
    name = str(path)
    try:
        with _OPENERS[compression](path) as fh:
            if fmt == ".parquet":
                yield from _iter_parquet(fh, name, compressed=compression is not None)
            elif fmt == ".json":
                yield from _iter_json(fh.read(), name)
            else:
                yield from _iter_jsonl(fh, name)
    except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
        # The file (or its compression) broke while reading: the rows already
        # yielded stand; the rest is one reject naming the file.
        reason = f"file could not be read past this point: {type(exc).__name__}: {exc}"
        yield name, 0, MalformedRow(reason[:500], "")


def _decode_line(raw: bytes, first: bool) -> str:
    if first and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        shown = raw.decode("utf-8", "backslashreplace").rstrip("\r\n")
        raise MalformedRow(
            f"invalid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line)",
            shown[:_RAW_LIMIT],
        ) from None


def parse_json_text(text: str) -> Any:
    """``json.loads`` whose every failure is a :class:`MalformedRow` with a reason."""
    text = text.rstrip("\r\n")  # columns are counted on the row's own line
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedRow(
            f"bad JSON: {exc.msg} at column {exc.colno}", text.rstrip("\r\n")[:_RAW_LIMIT]
        ) from None
    except RecursionError:
        raise MalformedRow("bad JSON: nested too deeply to read", text[:_RAW_LIMIT]) from None


def _iter_jsonl(fh: IO[bytes], name: str) -> Iterator[tuple[str, int, Any]]:
    # Binary lines split on b"\n" only, so U+2028 inside a string is not a line break.
    for lineno, raw in enumerate(fh, start=1):
        try:
            text = _decode_line(raw, lineno == 1)
            if not text.strip():
                continue
            yield name, lineno, parse_json_text(text)
        except MalformedRow as exc:
            yield name, lineno, exc
        except Exception as exc:  # anything else about this one line is its reject
            reason = f"unreadable row: {type(exc).__name__}: {exc}"
            yield name, lineno, MalformedRow(reason[:500], repr(raw[:_RAW_LIMIT]))


def _decode_lines(data: bytes) -> tuple[str, dict[int, str]]:
    """Decode a whole file line by line; bad lines are kept (escaped) and listed by number."""
    bad: dict[int, str] = {}
    parts = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        try:
            parts.append(_decode_line(raw, lineno == 1))
        except MalformedRow as exc:
            bad[lineno] = str(exc)
            parts.append(exc.raw)
    return "\n".join(parts), bad


def _iter_json(data: bytes, name: str) -> Iterator[tuple[str, int, Any]]:
    """A ``.json`` file: a JSON array walked element by element, or JSON Lines."""
    text, bad = _decode_lines(data)
    start = len(text) - len(text.lstrip())
    if not text.startswith("[", start):
        whole = _one_object(text) if not bad else None
        if whole is not None:  # one (pretty-printed) object: one row
            yield name, line_of_text(text, start), whole
        else:
            yield from _iter_jsonl(io.BytesIO(data), name)
        return
    newlines = [i for i, ch in enumerate(text) if ch == "\n"]

    def line_of(pos: int) -> int:
        return bisect.bisect_left(newlines, pos) + 1

    for pos, end, value in _walk_array(text, start + 1):
        first, last = line_of(pos), line_of(max(pos, end - 1))
        broken = [n for n in range(first, last + 1) if n in bad]
        if broken:
            value = MalformedRow(f"line {broken[0]}: {bad[broken[0]]}", text[pos:end][:_RAW_LIMIT])
        yield name, first, value


def line_of_text(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _one_object(text: str) -> dict[str, Any] | None:
    """The file's single JSON object, if that is what it holds (else None: JSON Lines)."""
    if text.count("\n", 0, len(text.rstrip())) == 0:
        return None  # one line: JSON Lines reading reports it the same way
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _walk_array(text: str, pos: int) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(start, end, element or MalformedRow)`` for each element of a JSON array."""
    decoder = json.JSONDecoder()
    n = len(text)
    while True:
        pos = _skip_ws(text, pos)
        if pos >= n:
            yield pos, pos, MalformedRow("bad JSON: the array is not closed with ']'", "")
            return
        if text[pos] == "]":
            return
        try:
            value, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = (
                f"bad JSON: {exc.msg} at column {exc.colno}"
                if isinstance(exc, json.JSONDecodeError)
                else "bad JSON: nested too deeply to read"
            )
            resume = _resync(text, pos, decoder)
            yield pos, resume, MalformedRow(reason, text[pos:resume].strip()[:_RAW_LIMIT])
            pos = resume
            continue
        yield pos, end, value
        pos = _skip_ws(text, end)
        if pos < n and text[pos] == ",":
            pos += 1
        elif pos < n and text[pos] != "]":
            resume = _resync(text, pos, decoder)
            bad = MalformedRow("bad JSON: expected ',' or ']' after an element", text[pos:resume])
            yield pos, resume, bad
            pos = resume


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _resync(text: str, pos: int, decoder: json.JSONDecoder) -> int:
    """The start of the next line where an array element (or the closing ']') parses."""
    while True:
        nl = text.find("\n", pos)
        if nl < 0:
            return len(text)
        pos = _skip_ws(text, nl + 1)
        if pos >= len(text) or text[pos] == "]":
            return pos
        try:
            _, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError):
            continue
        after = _skip_ws(text, end)
        if after >= len(text) or text[after] in ",]":
            return pos


def _iter_parquet(fh: IO[bytes], name: str, *, compressed: bool) -> Iterator[tuple[str, int, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source: Any = pa.BufferReader(fh.read()) if compressed else fh
    line = 0
    for batch in pq.ParquetFile(source).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            line += 1
            yield name, line, row
