"""The stage contract: a function over a batch of records plus a declaration.

A stage function has the signature ``fn(batch, ctx) -> batch`` once its config
is bound with ``functools.partial``. It marks rows (``keep=False`` with a
``reject_reason``) instead of dropping them; the runner writes set-aside rows
to the stage's side output. Stages hold no global state: what they need
(a teacher, a model, an index) comes from :class:`StageContext`, built once
per process (:mod:`datagen.context`), which is what lets a Ray executor run
the same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datagen.config import DatagenConfig
from datagen.context import StageContext, merge_stats
from datagen.registry import declare

__all__ = ["STAGES", "Stage", "StageContext", "merge_stats", "register_stage"]


@dataclass(frozen=True, eq=False)
class Stage:
    """Declaration of one stage: everything the runner, executors and summary need.

    A stage module builds its :class:`Stage` and passes it to :func:`register_stage`;
    ``pipeline.stages`` then names it. No core module knows any stage by name.
    """

    name: str
    fn: Callable[..., list[Any]]
    """``fn(batch, ctx, *, cfg) -> batch``; ``cfg`` is the config sections it names."""
    consumes: str
    """Record kind in: ``"problem"`` or ``"sample"`` (``"none"`` for a source)."""
    produces: str
    """Record kind out."""
    config_keys: tuple[str, ...]
    """Config sections (``dedup``) or keys (``run.seed``) that shape the output; they key
    the manifest hash and are what ``fn`` gets as ``cfg``."""
    columnar: Callable[..., Any] | None = None
    """``columnar(table, ctx, *, cfg) -> table``: the same stage over an Arrow batch (the
    input rows with the record type's schema in, the output rows out, same order), so a
    row-wise stage pays no record conversion per row. The runner and executors use it
    when set; ``fn`` stays the reference (and what in-process callers use)."""
    writes: tuple[str, ...] | None = None
    """The columns this stage sets, for a stage whose output rows are its input rows, in
    the same order (verify adds verdicts; filter and dedup mark rows): the runner then
    saves only these (and ``keep``) with the rows' positions, a view over the previous
    stage's dataset (:mod:`datagen.views`), not another copy of every sample's text.
    A ``sink`` stage is saved as such a view too. None: the stage makes new rows
    (load, generate) and its output is saved whole."""
    needs_all_rows: bool = False
    """True for stages that compare rows with each other (dedup): one batch of everything."""
    per_prompt: bool = False
    """With ``needs_all_rows``: the rows compared are the samples of one prompt only
    (rank rules, sample dedup), so batches of whole prompts are enough when the data
    keeps each prompt's samples together (generate does); else one batch of everything."""
    side_name: str = "set_aside"
    """Folder of the rows the stage set aside (``duplicates``, ``contaminated``, ...)."""
    batch_size_key: str = "batch_size"
    """Which ``run`` field sets this stage's batch size (and resume granularity)."""
    default_batch_size: Callable[[DatagenConfig], int] | None = None
    """The batch size when that ``run`` field is null (e.g. the teacher's own default)."""
    wants_gpu: Callable[[DatagenConfig], bool] | None = None
    """Whether this run of the stage needs a GPU (Ray actors then ask for
    ``run.ray_gpus_per_actor``). None: never."""
    report: Callable[[Path, DatagenConfig], dict[str, Any] | None] | None = None
    """Builds the stage's section of the summary from its stage folder (exact over the
    saved datasets, so a resumed run reports the same)."""
    report_key: str = ""
    """Summary key of that section (default: ``<name>_report``)."""
    card_note: Callable[[dict[str, Any]], str] | None = None
    """A paragraph for the dataset card's Generation section, from the plain config."""
    sections: dict[str, type] = field(default_factory=dict)
    """Top-level config sections this stage adds (key -> dataclass), built by
    :mod:`datagen.compose` like the built-in ones."""
    stream: Callable[..., Iterator[list[Any]]] | None = None
    """``stream(records, ctx, *, cfg)`` yielding finished groups (all output rows of one
    input row, any order) over the stage's whole input: no batch barrier. The runner
    writes a shard every batch-size groups and resumes by the ``problem_id`` of the
    rows in finished shards. None: the stage runs batch by batch."""
    streams: Callable[[DatagenConfig], bool] | None = None
    """Whether this run uses ``stream`` (e.g. only teachers that keep a window full)."""
    sink: Callable[..., None] | None = None
    """``sink(data, ctx, *, cfg)`` over the whole input ``datasets.Dataset`` (memory-mapped),
    read by the stage itself, e.g. group by group; its rows pass through unchanged as the
    stage's dataset. For stages that write files (``emit``) rather than mark rows. None:
    the stage runs through ``fn``."""
    summary_note: Callable[[dict[str, Any], DatagenConfig], str | None] | None = None
    """One line for the summary from the stage's stats, when a setting held it back
    (e.g. a request window too small for the server); None when all is well."""
    description: str = ""

    def gpu(self, config: DatagenConfig) -> bool:
        """True when this stage asks for a GPU under ``config``."""
        return bool(self.wants_gpu and self.wants_gpu(config))


def columns_through(
    fn: Callable[..., list[Any]], record: type, reads: tuple[str, ...], writes: tuple[str, ...]
) -> Callable[..., Any]:
    """A ``columnar`` function from a record function that reads and sets a few fields.

    Records are built from the ``reads`` columns only (the others keep their
    defaults, so ``fn`` must read nothing else), and only the ``writes`` columns of
    the batch are replaced: the text the stage does not touch is never turned into
    Python objects and back (issue 19: that was most of a row-wise stage's cost).
    """

    def columnar(table: Any, ctx: StageContext, *, cfg: dict[str, Any]) -> Any:
        import pyarrow as pa

        if table.num_rows == 0:
            return table
        names = [c for c in record.FEATURES if c in reads]  # type: ignore[attr-defined]
        records = [record.from_row(r) for r in table.select(names).to_pylist()]
        out = fn(records, ctx, cfg=cfg)
        if len(out) != len(records):
            raise ValueError(f"{fn.__name__} returned {len(out)} rows for {len(records)}")
        schema = table.schema
        for name in writes:
            rows = [r.to_row()[name] for r in out] if name in record.JSON_FIELDS else None
            if rows is None:
                rows = [_field_row(r, name) for r in out]
            i = schema.get_field_index(name)
            table = table.set_column(i, name, pa.array(rows, schema.field(name).type))
        return table

    return columnar


def _field_row(record: Any, name: str) -> Any:
    value = getattr(record, name)
    if isinstance(value, list):
        return [v.to_row() if hasattr(v, "to_row") else v for v in value]
    return value


STAGES: dict[str, Stage] = {}
"""Every declared stage, by name (filled by :func:`register_stage`)."""


def register_stage(stage: Stage) -> Stage:
    """Declare ``stage``; a second stage of the same name is refused."""
    return declare(STAGES, "stage", stage)
