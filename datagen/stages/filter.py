"""Stage ``filter``: set aside samples that are cut off, too long, unanswered or looping.

Failing verification is not a reason to set a sample aside (negatives are
training data too); only samples unfit for any output are marked here.

The runner applies :func:`filter_table` to Arrow batches (no record objects): the
rules are column operations, and the repetition rule is bounded for every row
at once from hashed word 8-grams (:func:`repetition_bounds`); only rows the bound
cannot clear are counted exactly, with :func:`repeated_ngram_fraction`. Either
way a row gets the reason :func:`reject_reason` gives its record.
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from datagen.config import FilterConfig
from datagen.records import Sample
from datagen.stages.base import Stage, StageContext, register_stage
from verifiers.types import NO_ANSWER, is_no_answer

NGRAM = 8
"""Words per n-gram of the repetition rule."""

_MULTIPLIERS = {w: np.uint64(pow(1_000_003, w, 1 << 64)) for w in (1, 2, 4)}
"""Powers of the n-gram hash's multiplier (numpy wraps uint64 products at 2**64)."""

THREADS = max(1, min(2, os.cpu_count() or 1))
"""Threads that bound a batch's repetition at once (the stage runs in the main process)."""

MIN_THREAD_ROWS = 128
"""Below this many rows per thread a batch is bounded in one piece."""

_NOT_PYTHON_SPACE = "[\\x1c-\\x1f]"
"""ASCII characters ``str.split`` takes for whitespace but Arrow's ASCII split does not."""


def repeated_ngram_fraction(text: str, n: int = NGRAM) -> float:
    """Share of word n-grams taken by the most frequent one (high = degenerate loop)."""
    words = text.split()
    if len(words) < 4 * n:
        return 0.0
    grams = Counter(zip(*(words[i:] for i in range(n)), strict=False))
    top = max(grams.values())
    return top * n / len(words)


def has_answer(sample: Sample) -> bool:
    """True when the verifier found something to grade (or did not need to)."""
    if any(is_no_answer(verdict.details) for verdict in sample.verdicts):
        return False
    return bool(sample.content.strip())


def reject_reason(sample: Sample, cfg: FilterConfig) -> str | None:
    """The first rule a sample breaks, or None."""
    text = (sample.reasoning or "") + "\n" + sample.content
    return first_reason(
        sample.truncated, sample.completion_tokens, not has_answer(sample), text, cfg
    )


def first_reason(
    truncated: bool,
    completion_tokens: int,
    no_answer: bool,
    text: str | None,
    cfg: FilterConfig,
    repetition: float | None = None,
) -> str | None:
    """The first rule broken by a sample with these fields (``repetition``: known fraction)."""
    if cfg.drop_truncated and truncated:
        return "truncated: hit max_tokens"
    if cfg.max_completion_tokens is not None and completion_tokens > cfg.max_completion_tokens:
        return f"too long: {completion_tokens} > {cfg.max_completion_tokens} tokens"
    if cfg.require_answer and no_answer:
        return "format: no final answer"
    if repetition is None:
        repetition = repeated_ngram_fraction(text or "")
    if repetition > cfg.max_repeated_ngram_fraction:
        return "repetition: one 8-gram dominates the text"
    return None


def filter_samples(batch: list[Sample], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """Mark (never drop) samples that break a rule in ``filter``."""
    fcfg: FilterConfig = cfg["filter"]
    for sample in batch:
        reason = reject_reason(sample, fcfg)
        if reason is not None:
            sample.keep = False
            sample.reject_reason = reason
            ctx.count("filter", reason.split(":")[0])
    return batch


# -- columns ---------------------------------------------------------------------------


def repetition_bounds(texts: pa.Array, limit: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An upper bound on :func:`repeated_ngram_fraction` of each text, and where it is 0.

    Words are split by Arrow (ASCII texts without the separators only Python counts
    as space, so the words are those of ``str.split``) and hashed (polars); each row's
    n-gram hashes are then counted in buckets of their own (:func:`_bucket_top`), and
    the rows whose bucket bound exceeds ``limit`` (all rows when ``limit`` is None) are
    counted again by hash after one sort (:func:`_sorted_top`). Collisions can only
    merge n-grams, so no count is below the true one. Rows that are not plain ASCII get
    ``inf`` (not bounded: the caller counts them exactly).
    """
    n = NGRAM  # a power of two: n-gram hashes are built by doubling
    rows = len(texts)
    bound = np.full(rows, np.inf)
    short = np.zeros(rows, bool)
    plain = pc.and_(
        pc.fill_null(pc.string_is_ascii(texts), False),
        pc.invert(pc.fill_null(pc.match_substring_regex(texts, _NOT_PYTHON_SPACE), True)),
    )
    where = np.flatnonzero(plain.to_numpy(zero_copy_only=False))
    if not len(where):
        return bound, short
    lists = pc.ascii_split_whitespace(pc.ascii_trim_whitespace(texts.filter(plain)))
    counts = pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    counts[counts == 1] = 0  # "" alone: no word (and anything under 4n words scores 0)
    long_enough = counts >= 4 * n
    fractions = np.zeros(len(where))
    if long_enough.any():
        parents = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
        h = pl.from_arrow(pc.list_flatten(lists)).hash(seed=0).to_numpy()
        width = 1
        while width < n:  # the hash of ``2 * width`` words from two of ``width``
            h = h[:-width] * _MULTIPLIERS[width] + h[width:]
            width *= 2
        # An n-gram running into the next row is one more (bogus) n-gram of its first
        # row: like a collision, it can only raise the count.
        owner = parents[: len(h)]
        top = np.zeros(len(where), np.int64)
        if limit is not None:
            top = _bucket_top(h, owner, counts)
            over = long_enough & (top * n > limit * np.maximum(counts, 1))
        else:
            over = long_enough
        if over.any():
            picked = over[owner]
            top[over] = _sorted_top(h[picked], owner[picked], len(where))[over]
        fractions[long_enough] = top[long_enough] * n / counts[long_enough]
    bound[where] = fractions
    short[where] = ~long_enough
    return bound, short


def _bucket_top(h: np.ndarray, owner: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Per row, the largest count of n-gram hashes in one of its buckets (an upper bound).

    Each row gets a power of two at least twice its word count of buckets, so a count
    of one bucket is rarely above the true top count; it is never below it.
    """
    size = np.left_shift(1, np.ceil(np.log2(np.maximum(2 * words, 2))).astype(np.int64))
    start = np.r_[0, np.cumsum(size)[:-1]]
    bucket = start[owner] + (h >> np.uint64(40)).astype(np.int64) % size[owner]
    tally = np.bincount(bucket, minlength=int(size.sum()))
    return np.maximum.reduceat(tally, start)


def _sorted_top(h: np.ndarray, owner: np.ndarray, rows: int) -> np.ndarray:
    """Per row, the largest count of one n-gram hash (after one sort of row and hash)."""
    top = np.zeros(rows, np.int64)
    if not len(h):
        return top
    # One sort key: the row in the top 24 bits, 40 bits of the hash below.
    key = (owner.astype(np.uint64) << np.uint64(40)) | (h >> np.uint64(24))
    key.sort()
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    runs = np.diff(np.r_[starts, len(key)])
    row = (key[starts] >> np.uint64(40)).astype(np.int64)  # sorted: rows run in order
    first = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    top[row[first]] = np.maximum.reduceat(runs, first)  # the longest run per row
    return top


@functools.cache
def _threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(THREADS, thread_name_prefix="filter")


def _bounds_in_threads(texts: pa.Array, limit: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`repetition_bounds` of ``texts`` in up to :data:`THREADS` pieces at once.

    Arrow, polars and numpy release the GIL in these kernels, so a batch is bounded
    on both cores; each piece is at most 2**16 rows (the sort key holds 24 bits of row).
    """
    rows = len(texts)
    pieces = THREADS if rows >= 2 * MIN_THREAD_ROWS else 1
    step = min(1 << 16, -(-rows // pieces))
    slices = [texts.slice(lo, step) for lo in range(0, rows, step)]
    if len(slices) == 1:
        return [repetition_bounds(slices[0], limit)]
    return list(_threads().map(functools.partial(repetition_bounds, limit=limit), slices))


def _no_answer_rows(verdicts: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Rows with a verdict whose details say ``no_answer`` (JSON parsed only when it may)."""
    rows = len(verdicts)
    out = np.zeros(rows, bool)
    if rows == 0:
        return out
    if isinstance(verdicts, pa.ChunkedArray):
        verdicts = verdicts.combine_chunks()
    details = pc.list_flatten(verdicts).field("details")
    parents = pc.list_parent_indices(verdicts).to_numpy()
    maybe = pc.fill_null(pc.match_substring(details, NO_ANSWER), False).to_numpy(
        zero_copy_only=False
    )
    for i in np.flatnonzero(maybe):
        value = details[int(i)].as_py()
        parsed = json.loads(value) if isinstance(value, str) else (value or {})
        if isinstance(parsed, dict) and is_no_answer(parsed):
            out[parents[i]] = True
    return out


def _empty_content(content: pa.ChunkedArray) -> np.ndarray:
    """Rows whose ``content.strip()`` is empty (Python's strip, on the short ones only)."""
    content = pc.fill_null(content, "")
    short = pc.less_equal(pc.utf8_length(pc.utf8_trim_whitespace(content)), 8)
    out = np.zeros(len(content), bool)
    for i in np.flatnonzero(short.to_numpy(zero_copy_only=False)):
        out[i] = not content[int(i)].as_py().strip()
    return out


def filter_table(table: pa.Table, ctx: StageContext, *, cfg: dict[str, Any]) -> pa.Table:
    """:func:`filter_samples` over an Arrow batch: ``keep``/``reject_reason`` set column-wise."""
    fcfg: FilterConfig = cfg["filter"]
    rows = table.num_rows
    if rows == 0:
        return table
    truncated = pc.fill_null(table["truncated"], False).to_numpy(zero_copy_only=False)
    tokens = pc.fill_null(table["completion_tokens"], 0).to_numpy(zero_copy_only=False)
    no_answer = _no_answer_rows(table["verdicts"]) | _empty_content(table["content"])
    texts = pc.binary_join_element_wise(
        pc.fill_null(table["reasoning"], ""), pc.fill_null(table["content"], ""), "\n"
    ).combine_chunks()
    parts = _bounds_in_threads(texts, fcfg.max_repeated_ngram_fraction)
    bound = np.concatenate([p[0] for p in parts])
    zero = np.concatenate([p[1] for p in parts])
    limit = fcfg.max_repeated_ngram_fraction
    cleared = zero | (bound <= limit)
    maybe = truncated | no_answer | ~cleared
    if fcfg.max_completion_tokens is not None:
        maybe |= tokens > fcfg.max_completion_tokens
    keep = table["keep"].to_pylist()
    reasons = table["reject_reason"].to_pylist()
    for i in np.flatnonzero(maybe):
        text = None if cleared[i] else texts[int(i)].as_py()
        reason = first_reason(
            bool(truncated[i]),
            int(tokens[i]),
            bool(no_answer[i]),
            text,
            fcfg,
            0.0 if cleared[i] else None,
        )
        if reason is not None:
            keep[i], reasons[i] = False, reason
            ctx.count("filter", reason.split(":")[0])
    index = table.schema.get_field_index
    table = table.set_column(index("keep"), "keep", pa.array(keep, pa.bool_()))
    return table.set_column(index("reject_reason"), "reject_reason", pa.array(reasons, pa.string()))


register_stage(
    Stage(
        "filter",
        filter_samples,
        "sample",
        "sample",
        ("filter",),
        columnar=filter_table,
        writes=("keep", "reject_reason"),
    )
)
