"""Run a list of stages over a run directory, resumably.

Layout of a run directory::

    RUN_DIR/
      config.yaml           resolved config
      manifest.json         finished stages: config hash, counts, timings
      stages/NN_name/data   the stage's kept rows (datasets.save_to_disk), or for a
                            stage whose rows are its input rows (``Stage.writes``)
                            a view: positions in the previous stage's ``data`` plus
                            the columns it set (datagen.views; open with open_part)
      stages/NN_name/set_aside   rows the stage marked keep=False, with reasons
                            (``duplicates`` for dedup, ``contaminated`` for
                            decontaminate)
      stages/NN_name/.partial-HASH/   finished batches of an unfinished stage
      rejects.jsonl         malformed input rows, with file, line and reason
      summary.json          the funnel

Each stage's hash covers its own config sections, the hash of the stage
before it and the fingerprint of the data that stage wrote (see
:mod:`datagen.state`), so changing a late setting (say, the output) reruns
only the late stages, and a stage that reruns with a different result reruns
every stage after it. Within a stage, every finished batch is written (temp, then rename)
before the next begins; a killed run loses at most the batch in flight. A
stage that streams (``generate`` with an API teacher) is not cut into
batches: see :mod:`datagen.streaming`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from datagen.config import DatagenConfig
from datagen.executors import build_executor
from datagen.progress import KEY as PROGRESS
from datagen.progress import StageProgress, progress_enabled
from datagen.records import RECORD_TYPES, content_hash
from datagen.safetext import dumps_line
from datagen.shards import prompt_bounds, save_split, save_view, shard_batches
from datagen.stages.base import Stage, StageContext
from datagen.state import data_fingerprint, load_finished, load_manifest, shard_ok
from datagen.streaming import run_stream
from datagen.views import open_part

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    os.replace(tmp, path)


@dataclass
class StageResult:
    name: str
    hash: str
    rows_in: int
    rows_out: int
    rows_set_aside: int
    seconds: float
    skipped: bool = False
    stats: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    """Hash of the kept dataset's files; the next stage's hash covers it."""


def _known(entry: dict[str, Any]) -> dict[str, Any]:
    """A manifest entry's fields that :class:`StageResult` has (older or newer ones dropped)."""
    names = StageResult.__dataclass_fields__
    return {k: v for k, v in entry.items() if k in names}


def _view_columns(stage: Stage) -> tuple[str, ...] | None:
    """The columns a stage saved as a view stores (None: saved whole)."""
    if stage.sink is not None:
        return ()  # its rows pass through unchanged
    if stage.writes is None:
        return None
    return tuple(dict.fromkeys(("keep", *stage.writes)))


class Runner:
    """Runs stages in order; skips finished ones and resumes the unfinished one."""

    def __init__(self, config: DatagenConfig, run_dir: Path, stages: list[Stage]) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.stages = stages
        self.ctx = StageContext(config=config, run_dir=self.run_dir)
        self._check_chain()
        self.executor = build_executor(self.ctx)

    def _check_chain(self) -> None:
        """Fail before any work if a stage cannot read what the previous one writes."""
        kind = "none"
        for stage in self.stages:
            if stage.consumes != kind:
                raise ValueError(
                    f"pipeline.stages: '{stage.name}' reads {stage.consumes} records but "
                    f"the stage before it produces {kind}; reorder pipeline.stages"
                )
            kind = stage.produces

    # -- manifest ---------------------------------------------------------------
    def _load_manifest(self) -> dict[str, Any]:
        if self.config.run.resume:
            return load_manifest(self.run_dir / MANIFEST)
        return {"stages": {}}

    def stage_dir(self, index: int, stage: Stage) -> Path:
        return self.run_dir / "stages" / f"{index:02d}_{stage.name}"

    def _stage_hash(self, stage: Stage, previous: str, data_fp: str = "") -> str:
        plain = self.config.as_dict()
        sections = {}
        for key in stage.config_keys:
            value: Any = plain
            for part in key.split("."):
                value = value[part]
            sections[key] = value
        # ``data_fp``: the data this stage reads, so a changed input reruns the stage.
        return content_hash(previous, data_fp, stage.name, sections)

    def _stage_config(self, stage: Stage) -> dict[str, Any]:
        """The config sections a stage declared, by (possibly dotted) key."""
        out = {}
        for key in stage.config_keys:
            value: Any = self.config
            for part in key.split("."):
                value = getattr(value, part)
            out[key] = value
        return out

    # -- running ----------------------------------------------------------------
    def run(self) -> list[StageResult]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        manifest = self._load_manifest()
        if not self.config.run.resume and (self.run_dir / "stages").exists():
            shutil.rmtree(self.run_dir / "stages")
        results: list[StageResult] = []
        previous_hash, previous_fp = "root", ""
        upstream: Path | None = None  # the previous stage's kept rows, which a view reads
        data: datasets.Dataset | None = None
        try:
            for index, stage in enumerate(self.stages):
                digest = self._stage_hash(stage, previous_hash, previous_fp)
                sdir = self.stage_dir(index, stage)
                done = manifest["stages"].get(stage.name)
                finished = None
                if done and done["hash"] == digest and (sdir / "data").exists():
                    finished = load_finished(
                        sdir, stage.side_name, done.get("fingerprint"), previous_fp
                    )
                if finished is not None:
                    logger.info("stage %s: finished earlier, skipping", stage.name)
                    result = StageResult(**{**_known(done), "skipped": True})
                    data = finished
                else:
                    source = None if upstream is None else (upstream, previous_fp)
                    data, result = self._run_stage(index, stage, digest, data, source)
                    manifest["stages"][stage.name] = {
                        k: v for k, v in result.__dict__.items() if k != "skipped"
                    }
                    write_json_atomic(self.run_dir / MANIFEST, manifest)
                results.append(result)
                previous_hash, previous_fp = digest, result.fingerprint
                upstream = sdir / "data"
        finally:
            self.executor.close()
        return results

    def _run_stage(
        self,
        index: int,
        stage: Stage,
        digest: str,
        data: datasets.Dataset | None,
        upstream: tuple[Path, str] | None = None,
    ) -> tuple[datasets.Dataset, StageResult]:
        """Run one stage over ``data``, read from ``upstream`` (its folder and fingerprint)."""
        started = time.monotonic()
        sdir = self.stage_dir(index, stage)
        sdir.mkdir(parents=True, exist_ok=True)
        for stale in sdir.glob(".partial-*"):
            if stale.name != f".partial-{digest}":
                shutil.rmtree(stale)  # shaped by another config: not reusable
        partial_dir = sdir / f".partial-{digest}"
        partial_dir.mkdir(exist_ok=True)
        if stage.consumes == "none" and not any(partial_dir.iterdir()):
            (self.run_dir / "rejects.jsonl").unlink(missing_ok=True)

        cfg = self._stage_config(stage)
        out_type = RECORD_TYPES[stage.produces]
        rows_in = 0 if data is None else len(data)
        run = self.config.run
        batch_size = getattr(run, stage.batch_size_key)
        if batch_size is None:  # the stage's own default (generate: the teacher's)
            batch_size = stage.default_batch_size(self.config) if stage.default_batch_size else 1
        bounds = None
        if data is not None and stage.per_prompt:
            bounds = prompt_bounds(data, batch_size)  # None: prompts interleave
        if bounds is None and (data is None or stage.needs_all_rows):
            batch_size = max(rows_in, 1)

        enabled = progress_enabled(self.config.run.progress)
        bar = self.ctx.resources[PROGRESS] = StageProgress(
            rows_in, f"{index:02d} {stage.name}", enabled
        )
        streamed = self._streams(stage, data)
        # Rows that are the input rows: saved as positions + set columns (datagen.views).
        view = upstream is not None and not streamed and _view_columns(stage) is not None
        shards: list[Path] = []
        self.executor.stage_begin(stage, cfg)
        if stage.sink is not None and data is not None:
            # Reads its input from disk itself (group by group); its rows pass through.
            stage.sink(data, self.ctx, cfg=cfg)
            bar.update(rows_in)
        elif streamed:
            shards = run_stream(
                stage,
                cfg,
                self.ctx,
                data,
                partial_dir,
                batch_size,
                bar.update,
                self._flush_rejects,
                self.executor.streamer(stage),
            )
        else:
            bounds = bounds or [
                (lo, min(rows_in, lo + batch_size)) for lo in range(0, max(rows_in, 1), batch_size)
            ]
            stored = _view_columns(stage) if view else None
            shards = self._run_batches(stage, cfg, data, partial_dir, bounds, bar, stored)
        self.executor.stage_end()
        bar.close()
        self.ctx.resources.pop(PROGRESS, None)

        # Copied shard by shard into one memory-mapped file; split (and, for a streamed
        # stage whose shards hold groups in completion order, sorted) by index.
        # Arrow-format column access: no per-element Python reads of the ids.
        order_ids = data.with_format("arrow")["id"].combine_chunks() if streamed else None
        if view:
            assert upstream is not None
            n_kept, n_aside = save_view(
                shard_batches(shards),
                _view_columns(stage) or (),
                out_type.FEATURES,
                *upstream,
                sdir / "data",
                sdir / stage.side_name,
                rows_in,
            )
            kept = open_part(sdir / "data")
        else:
            kept, n_kept, n_aside = save_split(
                shard_batches(shards),
                out_type.FEATURES,
                sdir / ".assemble",
                sdir / "data",
                sdir / stage.side_name,
                order_ids,
            )
        shutil.rmtree(partial_dir)
        result = StageResult(
            name=stage.name,
            hash=digest,
            rows_in=rows_in,
            rows_out=n_kept,
            rows_set_aside=n_aside,
            seconds=round(time.monotonic() - started, 3),
            stats=self.ctx.stats.get(stage.name, {}),
            fingerprint=data_fingerprint(sdir / "data"),
        )
        logger.info(
            "stage %s: %d in, %d kept, %d set aside (%.1fs)",
            stage.name,
            rows_in,
            n_kept,
            n_aside,
            result.seconds,
        )
        return kept, result

    def _streams(self, stage: Stage, data: datasets.Dataset | None) -> bool:
        """Whether ``stage`` runs as one stream here (keyed input)."""
        if stage.stream is None or data is None:
            return False
        if stage.streams is not None and not stage.streams(self.config):
            return False
        ids = data["id"]
        if len(set(ids)) != len(ids):  # resume is by id: ambiguous ids run batch by batch
            logger.warning("stage %s: input ids are not unique; not streaming", stage.name)
            return False
        return True

    def _run_batches(
        self,
        stage: Stage,
        cfg: dict[str, Any],
        data: datasets.Dataset | None,
        partial_dir: Path,
        bounds: list[tuple[int, int]],
        bar: StageProgress,
        stored: tuple[str, ...] | None = None,
    ) -> list[Path]:
        """Run the stage batch by batch (rows ``lo:hi`` each), skipping batches whose shard
        is there. ``stored``: the columns a view stage keeps (the shards hold only those)."""
        shards: list[Path] = []
        todo: list[tuple[Path, int, int]] = []
        for b, (lo, hi) in enumerate(bounds):
            shard = partial_dir / f"shard-{b:06d}.parquet"
            shards.append(shard)
            if shard.exists() and shard_ok(shard):
                bar.update(hi - lo)
            else:
                todo.append((shard, lo, hi))
        # The executor may work ahead (Ray actors); each result is written before the next
        # is taken, so a kill loses at most the batches in flight.
        inputs = (
            pa.table({}) if data is None else data.with_format("arrow")[lo:hi] for _, lo, hi in todo
        )
        outputs = self.executor.map(stage, cfg, inputs)
        for (shard, lo, hi), table in zip(todo, outputs, strict=True):
            self._flush_rejects()
            if stored is not None:
                if table.num_rows != hi - lo:
                    raise ValueError(
                        f"stage {stage.name} declares that its rows are its input rows "
                        f"(Stage.writes) but returned {table.num_rows} rows for {hi - lo}"
                    )
                missing = [c for c in stored if c not in table.column_names]
                if missing:
                    raise ValueError(
                        f"stage {stage.name} declares it writes {missing} (Stage.writes) "
                        f"but its output has no such column"
                    )
                table = table.select(list(stored))
            tmp = shard.with_suffix(".tmp")
            # Read once, then deleted: not worth compressing (it doubled the write and read).
            pq.write_table(table, tmp, compression="none", write_statistics=False)
            os.replace(tmp, shard)
            bar.update(hi - lo)
        return shards

    def _flush_rejects(self) -> None:
        """Append malformed input rows reported by a stage to rejects.jsonl."""
        if not self.ctx.rejects:
            return
        with open(self.run_dir / "rejects.jsonl", "a", encoding="utf-8") as fh:
            for rej in self.ctx.rejects:
                fh.write(dumps_line(rej) + "\n")  # one line each, whatever the row holds
        self.ctx.rejects.clear()
