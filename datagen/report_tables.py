"""The report's sample tables, computed by polars over the columns they need.

A run's final stage can hold a million samples; building a :class:`Sample` per row
three times over was most of the report's time (issue 19). These functions read
only the columns each table needs (through Arrow, so the memory-mapped stage data
is not copied into Python objects) and return the same numbers, in the same order,
as the per-sample loops they replace.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import datasets
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from datagen.output.difficulty import BUCKETS, bucket_expr
from datagen.records import arrow_columns

DIFFICULTY_FIELDS = ("level", "difficulty")
"""Problem metadata fields read as the source's own difficulty label, first present wins."""
SAMPLE_COLUMNS = ("id", "problem_id", "domain", "teacher", "model", "completion_tokens", "passed")


def problem_labels(problems: datasets.Dataset | None) -> pl.DataFrame:
    """``problem_id`` -> the source label and source difficulty the report groups by.

    The label is the metadata's ``source`` when set, else the problem's ``source``; the
    difficulty is the first of :data:`DIFFICULTY_FIELDS` set in the metadata (None if
    neither is). One JSON parse per problem, not per sample.
    """
    ids: list[str] = []
    sources: list[str] = []
    levels: list[str | None] = []
    if problems is not None:
        table = arrow_columns(problems, ("id", "source", "metadata"))
        have_meta = "metadata" in table.column_names
        metas = table.column("metadata").to_pylist() if have_meta else [None] * len(table)
        for pid, source, raw in zip(
            table.column("id").to_pylist(), table.column("source").to_pylist(), metas, strict=True
        ):
            meta = json.loads(raw) if isinstance(raw, str) else (raw or {})
            ids.append(pid)
            sources.append(str(meta.get("source") or source))
            level = next((meta[f] for f in DIFFICULTY_FIELDS if meta.get(f) is not None), None)
            levels.append(None if level is None else str(level))
    return pl.DataFrame(
        {"problem_id": ids, "source_label": sources, "level": levels},
        schema={"problem_id": pl.String, "source_label": pl.String, "level": pl.String},
    )


def _rates(frame: pl.DataFrame, key: str) -> list[dict[str, Any]]:
    """Positive, negative and unverifiable counts and the pass rate per value of ``key``."""
    counts = frame.group_by(key).agg(
        positive=(pl.col("passed") == True).sum(),  # noqa: E712 (a column expression)
        negative=(pl.col("passed") == False).sum(),  # noqa: E712
        unverifiable=pl.col("passed").is_null().sum(),
    )
    rows = []
    for group, pos, neg, unv in sorted(counts.iter_rows(), key=lambda r: r[0]):
        graded = pos + neg
        rate = round(pos / graded, 4) if graded else None
        rows.append(
            {
                "group": group,
                "positive": pos,
                "negative": neg,
                "unverifiable": unv,
                "pass_rate": rate,
            }
        )
    return rows


def pass_rate_tables(
    samples: pl.DataFrame, labels: pl.DataFrame, edges: Sequence[float]
) -> dict[str, list[dict[str, Any]]]:
    """Pass rate of the kept samples by source, domain, teacher and difficulty.

    ``source difficulty`` is the problem's own label (``level``/``difficulty`` metadata);
    ``difficulty bucket`` groups prompts by their measured pass rate
    (:func:`datagen.output.difficulty.difficulty`), so it shows how the rows spread.
    A table appears once a sample has a group in it, in the order its first sample
    brings it (so ``source difficulty`` follows the buckets when the first sample's
    problem has no label).
    """
    if not len(samples):
        return {}
    buckets = (
        samples.group_by("problem_id")
        .agg(
            positives=(pl.col("passed") == True).sum(),  # noqa: E712
            negatives=(pl.col("passed") == False).sum(),  # noqa: E712
        )
        .select("problem_id", bucket=bucket_expr("positives", "negatives", edges))
    )
    frame = (
        samples.with_row_index("_row")
        .join(labels.unique("problem_id", keep="last"), on="problem_id", how="left")
        .join(buckets, on="problem_id", how="left")
        .sort("_row")
        .with_columns(
            source=pl.col("source_label").fill_null("?"),
            teacher_model=pl.format(
                "{} ({})",
                pl.col("teacher").fill_null("None"),
                pl.col("model").fill_null("None"),
            ),
        )
    )
    order = ["source", "domain", "teacher"]
    levelled = frame.filter(pl.col("level").is_not_null())
    if len(levelled) and frame["level"][0] is not None:
        order += ["source difficulty", "difficulty bucket"]
    else:
        order += ["difficulty bucket"] + (["source difficulty"] if len(levelled) else [])
    column = {
        "source": "source",
        "domain": "domain",
        "teacher": "teacher_model",
        "difficulty bucket": "bucket",
    }
    tables = {
        name: _rates(levelled, "level")
        if name == "source difficulty"
        else _rates(frame, column[name])
        for name in order
    }
    rank = {b: i for i, b in enumerate(BUCKETS)}
    tables["difficulty bucket"].sort(key=lambda r: rank.get(r["group"], len(rank)))
    return tables


def _decided(verdicts: list[dict[str, Any]]) -> dict[str, bool]:
    """The verifiers that decided (the combined ``ensemble`` left out): name -> passed."""
    decided = {v["verifier"]: v["passed"] for v in verdicts if v["verifier"] != "ensemble"}
    return {k: v for k, v in decided.items() if v is not None}


def disagreements(data: datasets.Dataset | None, examples: int = 5) -> dict[str, Any]:
    """Samples on which verifiers that decided (not the combined ``ensemble``) disagree.

    Verdicts are exploded into one row per (sample, verifier); a verifier named twice
    on a sample counts with its last verdict, as a dict built over them would.
    """
    empty = {"compared": 0, "disagreements": 0, "by_verifiers": {}, "examples": []}
    if data is None or "verdicts" not in data.column_names or not len(data):
        return empty
    table = arrow_columns(data, ("id", "problem_id", "verdicts"))
    flat = (
        verdict_outcomes(table.column("verdicts"))
        .filter(pl.col("verifier") != "ensemble")
        .with_row_index("_at")
    )
    last = flat.group_by("_row", "verifier").agg(pl.col("passed").sort_by("_at").last())
    decided = last.drop_nulls("passed")
    per_sample = (
        decided.group_by("_row")
        .agg(
            n=pl.len(),
            agree=pl.col("passed").n_unique() == 1,
            names=pl.col("verifier").sort().str.join(" vs "),
        )
        .filter(pl.col("n") >= 2)
        .sort("_row")
    )
    split = per_sample.filter(~pl.col("agree"))
    by_verifiers: dict[str, int] = {}
    for names in split["names"].to_list():  # first-seen order, as a Counter would keep
        by_verifiers[names] = by_verifiers.get(names, 0) + 1
    found = []
    for row in split["_row"].head(examples).to_list():
        ex = table.slice(row, 1).to_pylist()[0]
        found.append(
            {"sample": ex["id"], "problem": ex["problem_id"], "verdicts": _decided(ex["verdicts"])}
        )
    return {
        "compared": len(per_sample),
        "disagreements": len(split),
        "by_verifiers": by_verifiers,
        "examples": found,
    }


def verdict_outcomes(verdicts: pa.ChunkedArray) -> pl.DataFrame:
    """One row per verdict: its sample's row, ``verifier`` and ``passed``, in order.

    Only those two fields are taken out of the verdicts, in Arrow, chunk by chunk:
    handing polars the whole column copied every verdict's details too (issue 12:
    about 1 GB of the report's memory at 100k samples).
    """
    rows, verifiers, passed = [], [], []
    start = 0
    for chunk in verdicts.chunks:
        flat = chunk.flatten()
        present = flat.is_valid()
        parents = pc.list_parent_indices(chunk)
        rows.append(pc.add(parents.filter(present).cast(pa.int64()), start))
        kept = flat.filter(present)
        verifiers.append(pc.struct_field(kept, "verifier"))
        passed.append(pc.struct_field(kept, "passed"))
        start += len(chunk)
    return pl.DataFrame(
        {
            "_row": pl.from_arrow(pa.chunked_array(rows, pa.int64())),
            "verifier": pl.from_arrow(pa.chunked_array(verifiers, pa.string())),
            "passed": pl.from_arrow(pa.chunked_array(passed, pa.bool_())),
        }
    )


def sample_frame(data: datasets.Dataset | None) -> pl.DataFrame:
    """The final samples' id, prompt, domain, teacher, model and verdict (no text)."""
    if data is None or "problem_id" not in data.column_names:
        schema = {c: pl.String for c in SAMPLE_COLUMNS[:-2]}
        return pl.DataFrame(schema=schema | {"completion_tokens": pl.Int32, "passed": pl.Boolean})
    return pl.from_arrow(arrow_columns(data, SAMPLE_COLUMNS))
