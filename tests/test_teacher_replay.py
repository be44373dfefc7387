"""Replay teacher: stored traces in, the usual samples out, labels kept as verdicts.

Real data: Qwen2.5-Math's labelled traces (800 = 100 MATH test problems x 8
samples, 728 labelled correct), copied into ``fixtures/math``. Layout of
OpenR1-Math (lists of generations per row): ``fixtures/traces/openr1_style.jsonl``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from datagen.config import ConfigError, RunConfig, SamplingConfig, SourceConfig, VerifyConfig
from datagen.records import Problem
from datagen.sources import read_problems
from datagen.teachers import build_teacher
from datagen.teachers.replay import ReplayTeacher, ReplayTeacherConfig
from datagen.views import open_part

ROOT = Path(__file__).resolve().parents[1]
QWEN = Path(__file__).parent / "fixtures" / "math" / "traces_qwen25_math_cot_100.jsonl"
OPENR1 = Path(__file__).parent / "fixtures" / "traces" / "openr1_style.jsonl"
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."

needs_qwen = pytest.mark.skipif(not QWEN.exists(), reason=f"{QWEN} is not here")


def qwen_config(**kw: Any) -> ReplayTeacherConfig:
    opts = {
        "path": str(QWEN),
        "model": "Qwen2.5-Math-7B-Instruct",
        "label_field": "correct",
        "label_name": "qwen_score",
        "score_field": "rm_score",
        "order_field": "sample_idx",
        "detail_fields": ["id", "pred"],
        **kw,
    }
    return ReplayTeacherConfig(**opts)


def openr1_config(**kw: Any) -> ReplayTeacherConfig:
    """The OpenR1 fixture's layout: several generations per row, labels, finish reasons."""
    return ReplayTeacherConfig(
        path=str(OPENR1),
        model="DeepSeek-R1",
        response_field="generations",
        label_field="correctness_math_verify",
        finish_reason_field="finish_reasons",
        **kw,
    )


def math_problems(pairs: list[tuple[str, str]]) -> list[Problem]:
    """One math problem per (prompt, reference), ids p0, p1, ..."""
    return [
        Problem(
            id=f"p{i}",
            source="t",
            domain="math",
            reference=ref,
            messages=[{"role": "user", "content": text}],
        )
        for i, (text, ref) in enumerate(pairs)
    ]


def unique_problems(
    path: Path, prompt_field: str = "problem", id_field: str = "id", reference_field: str = "answer"
) -> list[Problem]:
    """The problems of a traces file, once each (what load + dedup make of it)."""
    source = SourceConfig(
        path=str(path),
        prompt_field=prompt_field,
        id_field=id_field,
        reference_field=reference_field,
    )
    problems, _ = read_problems(source, SYSTEM)
    seen: dict[str, Problem] = {}
    for p in problems:
        seen.setdefault(p.prompt, p)
    return list(seen.values())


@needs_qwen
def test_replays_every_qwen_trace_with_its_label():
    problems = unique_problems(QWEN)
    teacher = ReplayTeacher(qwen_config())
    samples = teacher.generate(problems, SamplingConfig(n=8), 0)
    assert len(problems) == 100 and len(samples) == 800
    assert all(s.keep and s.error is None and s.content for s in samples)
    assert {s.teacher for s in samples} == {"replay"}
    assert {s.model for s in samples} == {"Qwen2.5-Math-7B-Instruct"}
    assert sum(s.passed is True for s in samples) == 728
    raw = {r["id"]: r for r in map(json.loads, QWEN.read_text().splitlines())}
    for s in samples:
        [verdict] = s.verdicts
        row = raw[verdict.details["id"]]
        assert row["sample_idx"] == s.sample_index and row["response"].strip() == s.content
        assert (verdict.verifier, verdict.passed, verdict.score) == (
            "qwen_score",
            row["correct"],
            row["rm_score"],
        )
        assert verdict.details["pred"] == row["pred"]
    assert teacher.requests_sent == 800 and teacher.cost_spent == 0
    again = ReplayTeacher(qwen_config()).generate(problems, SamplingConfig(n=8), 0)
    assert [s.to_row() for s in again] == [s.to_row() for s in samples]


@needs_qwen
def test_asking_for_more_samples_than_stored_marks_the_rest_failed():
    problems = unique_problems(QWEN)[:3]
    samples = ReplayTeacher(qwen_config()).generate(problems, SamplingConfig(n=10), 0)
    extra = [s for s in samples if s.sample_index >= 8]
    assert len(extra) == 6 and all(not s.keep for s in extra)
    assert "8 trace(s) for this prompt" in extra[0].error


def test_openr1_layout_lists_think_blocks_and_finish_reasons(tmp_path):
    cfg = openr1_config()
    problems = math_problems(
        [
            ("What is $3 \\times 4$?", "12"),
            ("Simplify $\\frac{6}{8}$.", "\\frac34"),
            ("Let $x+1=3$.   Find $x$.", "2"),
        ]
    )
    teacher = build_teacher(cfg, tmp_path)  # through the registry, as the stage does
    assert teacher.skipped == 2 and teacher.cache is None
    samples = teacher.generate(problems, SamplingConfig(n=2), 0)
    first, wrong, p2a, p2b, p3a, p3b = samples
    assert (first.reasoning, first.content, first.passed) == (
        "3 times 4 is 12.",
        "The answer is $\\boxed{12}$.",
        True,
    )
    assert wrong.passed is False and wrong.verdicts[0].verifier == "imported"
    assert p2b.truncated and p2b.finish_reason == "length" and p2a.finish_reason == "stop"
    assert p3a.content == "$x = \\boxed{2}$" and p3a.finish_reason is None  # whitespace-insensitive
    assert not p3b.keep and "1 trace(s)" in p3b.error
    assert not list(tmp_path.iterdir())  # no request cache for replayed data


def test_path_is_required():
    with pytest.raises(ConfigError, match=r"teacher\.path is required"):
        ReplayTeacherConfig()


@dataclass(frozen=True)
class StandInConfig:
    """The sections load, dedup, generate and verify read (stand-in for DatagenConfig)."""

    run: Any
    source: Any
    dedup: Any
    generation: Any
    teacher: Any
    verifier: Any
    verify: Any = field(default_factory=VerifyConfig)
    sources: list[Any] = field(default_factory=list)
    teachers: tuple = ()  # generate reads the teachers list (empty: the one teacher)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def source_list(self) -> list[Any]:
        return list(self.sources) or [self.source]


@needs_qwen
def test_pipeline_reverifies_replayed_traces_beside_their_labels(tmp_path):
    stages = pytest.importorskip("datagen.stages")
    from datagen.config import VerifierChoice
    from datagen.runner import Runner
    from datagen.stages.dedup import DedupConfig
    from datagen.verify_registry import VERIFIERS

    config = StandInConfig(
        run=RunConfig(limit=40, generate_batch_size=100, progress=False),
        source=SourceConfig(path=str(QWEN), system_prompt=SYSTEM),
        dedup=DedupConfig(method="exact"),
        generation=SamplingConfig(n=8),
        teacher=qwen_config(),
        verifier=VerifierChoice("math", VERIFIERS["math"].config_cls()),
    )
    names = ["load", "dedup", "generate", "verify"]
    results = Runner(config, tmp_path, [stages.STAGES[n] for n in names]).run()  # type: ignore[arg-type]
    assert [r.rows_out for r in results] == [40, 5, 40, 40]  # 40 rows = 5 problems x 8 traces

    from datagen.records import Sample

    rows = open_part(str(tmp_path / "stages" / "03_verify" / "data")).to_list()
    samples = [Sample.from_row(r) for r in rows]
    assert all([v.verifier for v in s.verdicts] == ["qwen_score", "math"] for s in samples)
    agree = sum(s.verdicts[0].passed == s.verdicts[1].passed for s in samples)
    assert agree >= 36  # math-verify agrees with Qwen's own labels on nearly all


@pytest.mark.parametrize("label", [None, "b"])
def test_table_path_gives_the_record_paths_rows(tmp_path, label):
    """The stage's columnar path (issue 19) writes exactly what ``generate`` + ``to_row`` do:
    labels, details, ``<think>`` splits, finish reasons and missing traces included."""
    import pyarrow as pa

    from datagen.records import Sample

    cfg = openr1_config(detail_fields=["problem"])
    problems = math_problems(
        [("What is $3 \\times 4$?", "12"), ("Let $x+1=3$.   Find $x$.", "2"), ("None", "0")]
    )
    teacher = build_teacher(cfg, tmp_path)
    teacher.label = label
    schema = Sample.FEATURES.arrow_schema
    expected = pa.Table.from_pylist(
        [s.to_row() for s in teacher.generate(problems, SamplingConfig(n=3), 7)], schema=schema
    )
    table = pa.Table.from_pylist(
        [p.to_row() for p in problems], schema=Problem.FEATURES.arrow_schema
    )
    got = teacher.generate_table(table, SamplingConfig(n=3), 7)
    assert got.schema == schema
    assert got.to_pylist() == expected.to_pylist()
    assert sum(r["error"] is not None for r in got.to_pylist()) == 6  # 2, 1 and 0 stored


def test_store_reads_only_the_traces_asked_for():
    """``take`` returns the asked rows in the asked order (repeats included) and copies
    only those: Arrow's own ``Table.take`` over the file's many record batches first
    concatenated every stored trace, which at a million traces was the whole file."""
    import numpy as np
    import pyarrow as pa

    from datagen.teachers.replay import Trace, TraceStore

    store = TraceStore()
    texts = [f"{i:05d} " + "x" * 4000 for i in range(3000)]  # 12 MB over 6 record batches
    for i, text in enumerate(texts):
        store.add(TraceStore.key(f"p{i // 4}"), (i % 4, 0), i // 4, Trace(response=text))
    store.finish()
    rows = [2999, 0, 1500, 513, 511, 1500, 7]
    default = pa.default_memory_pool()
    watched = pa.proxy_memory_pool(default)  # its max_memory counts only this take
    pa.set_memory_pool(watched)
    try:
        got = store.take(rows)["response"].to_pylist()  # its buffers freed here
    finally:
        pa.set_memory_pool(default)
    assert got == [texts[r] for r in rows]
    assert watched.max_memory() < 1_000_000, f"7 traces took {watched.max_memory()} bytes"
    picked = np.random.default_rng(0).integers(0, 3000, 400).tolist()
    assert store.take(picked)["response"].to_pylist() == [texts[r] for r in picked]
    assert store.take([]).num_rows == 0
