"""Open a stage's saved rows: a ``save_to_disk`` folder, or a view over the stage before.

A stage whose output rows are its input rows (``Stage.writes``: verify adds
verdicts, filter and dedup mark rows, emit passes them through) does not save
another copy of every sample's text (issue 19). Each of its parts (``data``, the
side output) is a *view* folder instead::

    view.json    {"upstream": "../../03_generate/data", "upstream_fingerprint": ...}
    view.arrow   _row (position in the upstream dataset) + the columns the stage set

:func:`open_part` rebuilds the dataset: the upstream's rows at those positions
(zero-copy slices of its memory-mapped files, a view over a view included) with
the stored columns in place of the upstream's. The rows, columns and order are
those the full copy held. A view is used only while its upstream is the dataset
it was built on: the upstream stage's fingerprint in ``manifest.json`` must be
the one the view recorded (:class:`StaleViewError` otherwise; the runner then
reruns the stage).

Every reader of a stage folder goes through :func:`open_part` (the report, the
funnel, emit, the summary, the stages' own reports).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa

VIEW_SPEC = "view.json"
VIEW_ROWS = "view.arrow"
ROW = "_row"
"""Column of a view's rows file: the row's position in the upstream dataset."""


class StaleViewError(ValueError):
    """A view whose upstream dataset is not the one it was built on (or is gone)."""


def is_view(folder: Path) -> bool:
    """Whether ``folder`` is a view folder (as opposed to a ``save_to_disk`` folder)."""
    return (Path(folder) / VIEW_SPEC).exists()


def is_part(folder: Path) -> bool:
    """Whether ``folder`` holds a stage part that :func:`open_part` can open."""
    folder = Path(folder)
    return is_view(folder) or (folder / "state.json").exists()


def write_view(
    folder: Path,
    upstream: Path,
    upstream_fingerprint: str,
    rows: np.ndarray,
    columns: pa.Table,
    upstream_rows: int,
) -> None:
    """Save a view folder (temp folder, then rename).

    Args:
        folder: The part's folder (``.../NN_stage/data`` or its side output); replaced.
        upstream: The folder of the dataset the rows are taken from (the previous
            stage's ``data``).
        upstream_fingerprint: Its fingerprint (:func:`datagen.state.data_fingerprint`).
        rows: Positions in the upstream dataset, ascending, one per row of the view.
        columns: The columns the stage set, one row per position (other columns come
            from the upstream).
        upstream_rows: The upstream dataset's rows (checked again when opened).
    """
    folder = Path(folder)
    if columns.num_columns and columns.num_rows != len(rows):
        raise ValueError(f"{folder}: {columns.num_rows} column rows for {len(rows)} positions")
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    table = pa.table({ROW: pa.array(np.asarray(rows, np.int64), pa.int64())})
    for name in columns.column_names:
        table = table.append_column(columns.schema.field(name), columns.column(name))
    with pa.ipc.new_file(str(tmp / VIEW_ROWS), table.schema) as writer:
        writer.write_table(table)
    spec = {
        "upstream": os.path.relpath(upstream, folder),
        "upstream_fingerprint": upstream_fingerprint,
        "upstream_rows": upstream_rows,
        "rows": len(rows),
        "columns": columns.column_names,
    }
    (tmp / VIEW_SPEC).write_text(json.dumps(spec, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def view_spec(folder: Path) -> dict[str, Any]:
    """A view folder's ``view.json``."""
    return json.loads((Path(folder) / VIEW_SPEC).read_text(encoding="utf-8"))


def upstream_of(folder: Path) -> Path:
    """The folder a view's rows come from."""
    return Path(os.path.normpath(Path(folder) / view_spec(folder)["upstream"]))


def open_part(folder: Path) -> datasets.Dataset:
    """A stage part's dataset, whether saved whole or as a view.

    Raises:
        FileNotFoundError: ``folder`` (or a view's upstream) is not there.
        StaleViewError: A view's upstream changed since the view was built.
    """
    folder = Path(folder)
    if not is_view(folder):
        return datasets.load_from_disk(str(folder))
    spec = view_spec(folder)
    upstream = upstream_of(folder)
    _check_upstream(folder, upstream, spec["upstream_fingerprint"])
    base = open_part(upstream)
    stored = pa.ipc.open_file(pa.memory_map(str(folder / VIEW_ROWS))).read_all()
    rows = stored.column(ROW).to_numpy()
    if spec["upstream_rows"] != len(base):
        raise StaleViewError(
            f"{folder} was built over {spec['upstream_rows']} rows of {upstream}, which has "
            f"{len(base)} now; rerun the pipeline with run.resume=true to rebuild it"
        )
    table = _take_runs(_arrow(base), rows)
    names = table.column_names
    for name in stored.column_names[1:]:
        table = table.set_column(names.index(name), name, stored.column(name))
    return datasets.Dataset(
        datasets.table.InMemoryTable(table),
        info=datasets.DatasetInfo(features=base.features),
        fingerprint=spec["upstream_fingerprint"] + "-" + folder.parent.name + "-" + folder.name,
    )


def _arrow(data: datasets.Dataset) -> pa.Table:
    """``data``'s rows as one Arrow table, zero-copy when it has no index mapping."""
    if data._indices is None:
        return data.data.table
    return data.with_format("arrow")[:]


def _take_runs(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """``table``'s ``rows`` (ascending) as zero-copy slices, one per run of consecutive rows."""
    if len(rows) == table.num_rows and (not len(rows) or rows[-1] == len(rows) - 1):
        return table
    if not len(rows):
        return table.slice(0, 0)
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(rows)]))
    parts = [table.slice(int(rows[a]), int(b - a)) for a, b in zip(starts, ends, strict=True)]
    return pa.concat_tables(parts)


def _check_upstream(folder: Path, upstream: Path, fingerprint: str) -> None:
    """Raise :class:`StaleViewError` unless ``upstream`` is still the dataset of that
    fingerprint, as the run's manifest records it (the runner checks the files
    themselves on resume, :func:`datagen.state.load_finished`)."""
    stage_dir = upstream.parent
    manifest = stage_dir.parent.parent / "manifest.json"
    name = stage_dir.name.split("_", 1)[-1]
    try:
        entry = json.loads(manifest.read_text(encoding="utf-8"))["stages"][name]
        recorded = entry.get("fingerprint")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StaleViewError(
            f"{folder} is a view over {upstream}, which {manifest} does not list as finished "
            f"({type(exc).__name__}: {exc}); rerun the pipeline with run.resume=true"
        ) from exc
    if recorded != fingerprint:
        raise StaleViewError(
            f"{folder} was built over another version of {upstream} (fingerprint {fingerprint}, "
            f"now {recorded}); rerun the pipeline with run.resume=true to rebuild it"
        )
    if not upstream.exists():
        raise FileNotFoundError(f"{folder} is a view over {upstream}, which is gone")
