"""Assemble a stage's datasets from its shards without holding the rows in memory.

A stage's shards (Parquet, one per batch or per group of streamed prompts)
are copied batch by batch, split by ``keep``, straight into the two
``save_to_disk`` folders (:class:`FolderWriter`). A streamed stage, whose shards
hold groups in completion order, is copied into one Arrow file beside them, which is then
memory-mapped: the kept / set-aside split and the sort
back into input order are computed over small key columns (``keep``,
``problem_id``, ``sample_index``) and applied as ``datasets`` index mappings,
which ``save_to_disk`` gathers a thousand rows at a time. Peak memory is one
shard batch plus the key columns, whatever the stage's size; the saved files
hold the same rows in the same order as concatenating everything in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets.arrow_writer import ArrowWriter
from datasets.utils.py_utils import convert_file_size_to_int

from datagen.views import write_view

READ_ROWS = 1024
"""Rows per record batch read from a shard (bounds the copy's memory)."""

MAX_SHARD_BYTES = convert_file_size_to_int(datasets.config.MAX_SHARD_SIZE)
"""Bytes per saved Arrow file, as ``save_to_disk`` counts them by default."""


def shard_batches(shards: Iterable[Path], rows: int | None = None) -> Iterator[pa.Table]:
    """The rows of Parquet ``shards``, in order, ``rows`` (default :data:`READ_ROWS`) at a time."""
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=rows or READ_ROWS):
            yield pa.Table.from_batches([batch])


def prompt_bounds(data: datasets.Dataset, rows: int) -> list[tuple[int, int]] | None:
    """Row ranges of about ``rows`` rows that never split a prompt's samples, or None when
    the samples of a prompt are not contiguous (the stage then gets every row at once).

    Generated samples are grouped by ``problem_id`` (generate writes them in input
    order), so a stage that compares the samples of one prompt can still run batch by
    batch; each batch ends at the first prompt boundary at or after ``rows`` rows.
    """
    if "problem_id" not in data.column_names:
        return None
    n = len(data)
    if n == 0:
        return [(0, 0)]
    pids = data.with_format("arrow")["problem_id"]
    firsts = pc.index_in(pids, value_set=pc.unique(pids)).to_numpy(zero_copy_only=False)
    steps = np.diff(firsts)
    if np.any(steps < 0):
        return None
    starts = np.flatnonzero(steps) + 1  # the first row of every prompt but the first
    bounds, lo = [], 0
    while lo < n:
        k = np.searchsorted(starts, lo + max(rows, 1))
        hi = int(starts[k]) if k < len(starts) else n
        bounds.append((lo, hi))
        lo = hi
    return bounds


def input_positions(problem_ids: pa.ChunkedArray, ids: pa.Array) -> np.ndarray:
    """Sort key of each row: the position of its ``problem_id`` among the input ``ids``."""
    return pc.index_in(problem_ids, value_set=ids).to_numpy(zero_copy_only=False)


def save_split(
    batches: Iterable[pa.Table],
    features: datasets.Features,
    work: Path,
    kept_path: Path,
    aside_path: Path,
    order_ids: pa.Array | None = None,
) -> tuple[datasets.Dataset, int, int]:
    """Write the rows of ``batches`` split by ``keep`` to two ``save_to_disk`` folders.

    Args:
        batches: The stage's output rows, batch by batch (any schema castable to ``features``).
        features: The record type's features (the saved schema).
        work: A folder for the one temporary Arrow file (removed afterwards).
        kept_path: Where the rows with ``keep`` true go (replaced atomically).
        aside_path: Where the others go (``keep`` false or null).
        order_ids: The input ids of a streamed stage: rows are then sorted by the
            position of their ``problem_id`` among them, then ``sample_index``
            (a stable sort, as :func:`datagen.streaming.input_order`). None: as read.

    Returns:
        The kept dataset (memory-mapped from ``kept_path``), rows kept, rows set aside.
    """
    if order_ids is None:  # rows stay in shard order: written straight to both folders
        with (
            FolderWriter(features, kept_path) as kept_w,
            FolderWriter(features, aside_path) as aside_w,
        ):
            for table in batches:
                table = table.select(features.arrow_schema.names).cast(features.arrow_schema)
                keep = pc.fill_null(table.column("keep"), False)
                kept_w.write(table.filter(keep))
                aside_w.write(table.filter(pc.invert(keep)))
        kept = datasets.load_from_disk(str(kept_path))
        return kept, kept_w.rows, aside_w.rows
    work.mkdir(parents=True, exist_ok=True)
    joined = work / "joined.arrow"
    schema = features.arrow_schema
    keep_parts: list[np.ndarray] = []
    kept_bytes = aside_bytes = 0
    with ArrowWriter(features=features, path=str(joined)) as writer:
        for table in batches:
            table = table.select(schema.names).cast(schema)
            keep = pc.fill_null(table.column("keep"), False)
            kept_bytes += table.filter(keep).nbytes
            aside_bytes += table.filter(pc.invert(keep)).nbytes
            keep_parts.append(keep.to_numpy(zero_copy_only=False).astype(bool))
            writer.write_table(table)
        writer.finalize()
    try:
        full = datasets.Dataset.from_file(str(joined))
        keep_mask = np.concatenate(keep_parts) if keep_parts else np.zeros(0, bool)
        keys = full.with_format("arrow").select_columns(["problem_id", "sample_index"])[:]
        positions = input_positions(keys.column("problem_id"), order_ids) if len(full) else []
        index = keys.column("sample_index").to_numpy(zero_copy_only=False)
        order = np.lexsort((index, positions)) if len(full) else np.arange(0)
        kept_rows = order[keep_mask[order]]  # lexsort is stable: ties keep shard order
        aside_rows = order[~keep_mask[order]]
        save_rows(full, kept_rows, kept_bytes, kept_path)
        save_rows(full, aside_rows, aside_bytes, aside_path)
        del full
    finally:
        shutil.rmtree(work, ignore_errors=True)
    kept = datasets.load_from_disk(str(kept_path))
    return kept, len(kept_rows), len(aside_rows)


class FolderWriter:
    """Write rows as a ``save_to_disk`` folder directly (temp folder, then rename).

    The Arrow files are written in the format ``save_to_disk`` writes (an Arrow
    stream whose schema carries the features; a new file past
    :data:`MAX_SHARD_BYTES`), then named ``data-i-of-n`` with the
    ``state.json`` and ``dataset_info.json`` that ``load_from_disk`` reads. A
    stage's rows are thus copied once from its shards, not into a joined file first
    and then again by ``save_to_disk`` (issue 19).
    """

    def __init__(self, features: datasets.Features, path: Path) -> None:
        self.features = features
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self.files: list[Path] = []
        self.rows = 0
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._bytes = 0

    def __enter__(self) -> FolderWriter:
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        return self

    def write(self, table: pa.Table) -> None:
        if not table.num_rows and self.files:
            return
        if self._writer is None or self._bytes + table.nbytes > MAX_SHARD_BYTES:
            self._close_file()
            self.files.append(self.tmp / f"part-{len(self.files):05d}.arrow")
            # The stream format and schema (features in its metadata) of datasets' files.
            self._writer = pa.ipc.new_stream(str(self.files[-1]), self.features.arrow_schema)
            self._bytes = 0
        self._writer.write_table(table)
        self._bytes += table.nbytes
        self.rows += table.num_rows

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if kind is not None:
            self._close_file()
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if not self.files:  # zero rows are still one file, or datasets cannot load it
            self.write(self.features.arrow_schema.empty_table())
        self._close_file()
        n = len(self.files)
        names = [f"data-{i:05d}-of-{n:05d}.arrow" for i in range(n)]
        digest = hashlib.sha256()
        for part, name in zip(self.files, names, strict=True):
            os.replace(part, self.tmp / name)
            digest.update(f"{name}:{(self.tmp / name).stat().st_size};".encode())
        state = {
            "_data_files": [{"filename": name} for name in names],
            "_fingerprint": digest.hexdigest()[:16],
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        info = asdict(datasets.DatasetInfo(features=self.features))
        (self.tmp / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
        (self.tmp / "dataset_info.json").write_text(
            json.dumps({k: info[k] for k in sorted(info)}, indent=2)
        )
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)


def save_view(
    batches: Iterable[pa.Table],
    columns: Sequence[str],
    features: datasets.Features,
    upstream: Path,
    upstream_fingerprint: str,
    kept_path: Path,
    aside_path: Path,
    rows_in: int,
) -> tuple[int, int]:
    """Save a stage whose rows are its input rows as two views over ``upstream``.

    Only ``columns`` (what the stage set, ``keep`` among them) are kept from its
    output, with each row's position in the upstream dataset, split by ``keep``;
    the text stays in the upstream's files (:mod:`datagen.views`).

    Args:
        batches: The stage's output, in input order (at least ``columns``).
        columns: The columns to store; empty for a stage whose rows pass through.
        features: The record type's features (the stored columns' types).
        upstream: The previous stage's ``data`` folder, which the stage read.
        upstream_fingerprint: Its fingerprint, recorded in the views.
        kept_path: Where the kept rows' view goes.
        aside_path: Where the set-aside rows' view goes.
        rows_in: The rows the stage read: its output must have as many.

    Returns:
        Rows kept, rows set aside.

    Raises:
        ValueError: The output has another number of rows than the input.
    """
    schema = pa.schema([features.arrow_schema.field(c) for c in columns])
    parts = [t.select(schema.names).cast(schema) for t in batches] if columns else []
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    if columns and table.num_rows != rows_in:
        raise ValueError(
            f"{kept_path.parent.name}: the stage declares its rows are its input rows "
            f"(Stage.writes) but wrote {table.num_rows} rows for {rows_in}"
        )
    keep = np.ones(rows_in, bool)
    if "keep" in schema.names:
        keep = pc.fill_null(table.column("keep"), False).to_numpy(zero_copy_only=False)
        keep = keep.astype(bool)
    for path, rows in ((kept_path, np.flatnonzero(keep)), (aside_path, np.flatnonzero(~keep))):
        part = table.take(rows) if columns else table
        write_view(path, upstream, upstream_fingerprint, rows, part, rows_in)
    return int(keep.sum()), int((~keep).sum())


def save_rows(full: datasets.Dataset, rows: np.ndarray, nbytes: int, path: Path) -> None:
    """Save ``full``'s ``rows`` (in that order) to ``path``: temp folder, then rename.

    Shards are counted from the rows' own size, as ``save_to_disk`` counts an
    in-memory table of just those rows; zero rows are still written as one shard,
    or ``datasets`` cannot load the folder back.
    """
    if len(rows) == len(full) and (len(rows) == 0 or np.all(rows == np.arange(len(full)))):
        part = full
    else:
        part = full.select(rows)
    shards = min(max(1, len(rows)), int(nbytes / MAX_SHARD_BYTES) + 1)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    part.save_to_disk(str(tmp), num_shards=shards)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
