"""Column-wise stages give what their record functions give (issue 19).

The filter's Arrow path is checked against :func:`filter_samples` on the 800
labelled Qwen2.5-Math traces and on rows made to break each rule (loops, blank
answers, non-ASCII text, the ASCII separators only Python splits on); the math
verifier's chunked path against its one-task-per-trace path.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import pyarrow as pa
import pytest

from datagen.config import FilterConfig
from datagen.context import StageContext
from datagen.executors import apply_stage
from datagen.records import Sample, Verdict, column_values
from datagen.stages import STAGES
from datagen.stages.filter import (
    filter_samples,
    filter_table,
    repeated_ngram_fraction,
    repetition_bounds,
)
from verifiers import math as math_verifier

TRACES = Path(__file__).parent / "fixtures" / "math" / "traces_qwen25_math_cot_100.jsonl"


def trace_rows() -> list[dict]:
    return [json.loads(line) for line in TRACES.read_text(encoding="utf-8").splitlines()]


def sample_rows() -> list[dict]:
    """The traces as sample rows, plus rows made to break (or nearly break) each rule."""
    rows = []
    for i, t in enumerate(trace_rows()):
        verdict = Verdict("math", "2", t["correct"], None, {"error": None})
        sample = Sample(
            id=str(i),
            problem_id=str(t["problem_idx"]),
            domain="math",
            messages=[{"role": "user", "content": t["problem"]}],
            reference=t["answer"],
            teacher="replay",
            model="qwen",
            sample_index=t["sample_idx"],
            content=t["response"],
            completion_tokens=len(t["response"]) // 4,
            verdicts=[verdict],
        )
        rows.append(sample.to_row())
    rng = random.Random(0)
    loop = "one two three four five six seven eight "
    for i in range(200):
        row = dict(rows[i])
        kind = i % 10
        if kind == 0:
            row["content"] = " ".join(["so the answer is"] * rng.randint(5, 60)) + " 3"
        elif kind == 1:
            row["content"] = rng.choice(["", "  \n ", "\x1c", "\u00a0"])
        elif kind == 2:
            row["truncated"] = True
        elif kind == 3:
            row["completion_tokens"] = 99_999
        elif kind == 4:
            row["reasoning"] = "loop " * rng.randint(10, 400)
            row["content"] = "é " + "x y z w a b c d " * rng.randint(1, 50)
        elif kind == 5:
            row["content"] = "a\x1cb " * rng.randint(20, 80)
        elif kind == 6:
            row["content"] = "".join(rng.choice("ab \n\t") for _ in range(rng.randint(0, 500)))
        elif kind == 7:
            row["reasoning"] = None
            row["content"] = loop * rng.randint(1, 12)
        elif kind == 8:
            no_answer = Verdict("math", "2", False, 0.0, {"error": "no_answer"}).to_row()
            row["verdicts"] = [*row["verdicts"], no_answer]
        else:
            mention = Verdict("math", "2", True, 1.0, {"reason": "no_answer is fine"}).to_row()
            row["verdicts"] = [mention]
        rows.append(row)
    return rows


def bare_ctx() -> StageContext:
    return StageContext.__new__(StageContext)  # only .stats is used by the filter


@pytest.mark.parametrize(
    "cfg",
    [
        FilterConfig(),
        FilterConfig(max_completion_tokens=300, max_repeated_ngram_fraction=0.1),
        FilterConfig(drop_truncated=False, require_answer=False),
    ],
    ids=["defaults", "strict", "lenient"],
)
def test_filter_table_marks_what_filter_samples_marks(cfg):
    rows = sample_rows()
    by_record, by_columns = bare_ctx(), bare_ctx()
    by_record.stats, by_columns.stats = {}, {}
    records = filter_samples([Sample.from_row(r) for r in rows], by_record, cfg={"filter": cfg})
    table = pa.Table.from_pylist(rows, schema=Sample.FEATURES.arrow_schema)
    out = filter_table(table, by_columns, cfg={"filter": cfg})
    assert out.column_names == table.column_names
    assert out["keep"].to_pylist() == [s.keep for s in records]
    assert out["reject_reason"].to_pylist() == [s.reject_reason for s in records]
    assert by_columns.stats == by_record.stats
    assert sum(not s.keep for s in records) > 30  # the made rows do break rules
    assert out.drop_columns(["keep", "reject_reason"]).equals(
        table.drop_columns(["keep", "reject_reason"])
    )


def test_repetition_bound_is_never_below_the_exact_fraction():
    texts = [r["content"] for r in sample_rows()]
    bound, short = repetition_bounds(pa.array(texts))
    exact = [repeated_ngram_fraction(t) for t in texts]
    for text, b, s, e in zip(texts, bound, short, exact, strict=True):
        assert b >= e - 1e-12, text[:80]
        if s:
            assert e == 0.0
    assert sum(b == e for b, e in zip(bound, exact, strict=True)) > len(texts) * 0.9


@pytest.mark.parametrize("limit", [0.05, 0.1, 0.5])
def test_bucket_bound_clears_only_below_the_limit(limit):
    """With a limit, the first (bucket) pass may clear a row only under the limit; any
    other row gets the sorted bound (the rows the bucket counts cannot clear)."""
    texts = [r["content"] for r in sample_rows()]
    sorted_bound, _ = repetition_bounds(pa.array(texts))
    bound, _ = repetition_bounds(pa.array(texts), limit)
    exact = [repeated_ngram_fraction(t) for t in texts]
    for text, b, s, e in zip(texts, bound, sorted_bound, exact, strict=True):
        assert b >= e - 1e-12, text[:80]
        assert b <= limit or b == s, text[:80]
    if limit == 0.5:  # the default: the bucket pass clears most rows by itself
        assert sum(b != s for b, s in zip(bound, sorted_bound, strict=True)) > 100


def test_apply_stage_uses_the_columnar_filter():
    rows = sample_rows()[-40:]
    table = pa.Table.from_pylist(rows, schema=Sample.FEATURES.arrow_schema)
    ctx = bare_ctx()
    ctx.stats = {}
    out = apply_stage(STAGES["filter"], {"filter": FilterConfig()}, ctx, table)
    expected = filter_samples(
        [Sample.from_row(r) for r in rows], bare_ctx_with_stats(), cfg={"filter": FilterConfig()}
    )
    assert out.schema == Sample.FEATURES.arrow_schema
    assert out["reject_reason"].to_pylist() == [s.reject_reason for s in expected]


def bare_ctx_with_stats() -> StageContext:
    ctx = bare_ctx()
    ctx.stats = {}
    return ctx


def test_chunked_math_verification_gives_the_per_trace_verdicts():
    rows = trace_rows()[:160]
    keys = [(r["response"], r["answer"], r["problem"]) for r in rows]
    config = math_verifier.MathVerifyConfig(workers=2)
    one_by_one = math_verifier._verify_each(keys, config)
    chunked = math_verifier._verify_chunks(keys, config)
    assert chunked == one_by_one
    assert (
        math_verifier.verify_batch(
            *zip(*[k[:2] for k in keys], strict=True), config, prompts=[k[2] for k in keys]
        )
        == one_by_one
    )


def test_chunk_past_its_limit_is_regraded_trace_by_trace(monkeypatch):
    """A chunk that times out is graded again one trace at a time, so only the slow
    trace is unverifiable (``timeout``); its neighbours keep their verdicts."""
    monkeypatch.setattr(math_verifier, "CHUNK_ROWS", 4)
    config = math_verifier.MathVerifyConfig(workers=2, timeout_s=1.0)
    answers = [r"\boxed{2}"] * 3 + [r"\boxed{(10^{7})!}"] + [r"\boxed{3}"] * 8
    refs = ["2"] * 3 + ["1"] + ["3"] * 8
    prompts = [f"problem {i}" for i in range(len(answers))]
    verdicts = math_verifier.verify_batch(answers, refs, config, prompts=prompts)
    assert [v.passed for v in verdicts] == [True] * 3 + [None] + [True] * 8
    assert verdicts[3].details["error"] == "timeout"


def test_column_values_honours_selections():
    data = datasets.Dataset.from_dict({"x": list(range(10))})
    picked = data.select([7, 2, 5])
    assert column_values(picked, "x") == [7, 2, 5] == list(picked["x"])


def test_columnar_verify_gives_the_record_path_rows(make_config, tmp_path):
    config = make_config("+pipeline=math", "verifier.workers=2")
    cfg = {"verifier": config.verifier, "verify": config.verify}
    rows = sample_rows()[:96] + sample_rows()[-8:]
    table = pa.Table.from_pylist(rows, schema=Sample.FEATURES.arrow_schema)
    ctx = StageContext(config=config, run_dir=tmp_path)
    out = apply_stage(STAGES["verify"], cfg, ctx, table)
    records = STAGES["verify"].fn([Sample.from_row(r) for r in rows], ctx, cfg=cfg)
    expected = pa.Table.from_pylist(
        [r.to_row() for r in records], schema=Sample.FEATURES.arrow_schema
    )
    assert out.equals(expected)
    assert {len(v) for v in out["verdicts"].to_pylist()} == {2, 3}  # one verdict added


FRACTION_CASES = [
    (r"\frac{1}{2}", "0.5"),
    (r"\frac12", "1/2"),
    (r"-\frac{1}{2}", r"\frac{-1}{2}"),
    (r"\dfrac{2}{4}", r"\frac{1}{2}"),
    ("3/8", r"\frac{3}{8}"),
    (r"\frac{5}{16}", r"\frac{3}{8}"),
    (r"\frac{3}{4}", r"\frac{3}{8}"),
    ("1/3", "0.333333"),
    ("1/3", "0.34"),
    (r"\frac{1}{3}", "0.3333333"),
    (r"\frac{10}{5}", "2"),
    (r"\frac{7}{5}", "2"),
    ("1,000", r"\frac{1000}{1}"),
    (r"\frac{1}{0}", "0"),
    (r"1\frac{1}{2}", r"\frac{3}{2}"),
    (r"\frac{1}{2}\%", "0.5"),
    (r"-\frac{3}{8}", r"\frac{3}{8}"),
    ("03/08", r"\frac{3}{8}"),
    (r"\tfrac{22}{7}", "3.14"),
    (r"$\frac{1}{2}$", r"\frac{1}{2}"),
    (r"\frac{1}{1000000001}", r"\frac{1}{1000000000}"),
]


@pytest.mark.parametrize(("answer", "reference"), FRACTION_CASES)
def test_fraction_fast_path_agrees_with_math_verify(answer, reference):
    """Where the exact-fraction path decides, Math-Verify (the path it skips) agrees."""
    from verifiers.math_compare import fractions_verdict

    config = math_verifier.MathVerifyConfig()
    for a, r in ((answer, reference), (reference, answer)):
        settled = fractions_verdict(a, r)
        if settled is None:
            continue
        found = (math_verifier.Extraction(a, "boxed"), [])
        assert math_verifier._grade(found, r, config, None).passed is settled[0], (a, r)


def test_fraction_fast_path_agrees_on_the_labelled_traces():
    from verifiers.math_compare import fractions_verdict

    config = math_verifier.MathVerifyConfig()
    decided = 0
    for row in trace_rows():
        found = math_verifier.extract(row["response"])
        if (
            found.answer is None
            or (settled := fractions_verdict(found.answer, row["answer"])) is None
        ):
            continue
        decided += 1
        graded = math_verifier._grade((found, []), row["answer"], config, row["problem"])
        assert graded.passed is settled[0], (found.answer, row["answer"])
    assert decided >= 5
