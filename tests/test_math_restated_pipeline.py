"""The default math pipeline never keeps a restated prompt expression as a positive (issue 18).

The README's first run showed it: the embedded model ended with ``\\binom{9}{8}``
after computing 64 and 560, math-verify evaluated the binomial to the reference,
and the copy of the question became a positive. Here the same problems
(``data/math_sample.jsonl``) go through ``+pipeline=math`` unchanged, with the replay
teacher standing in for the model (generating with llama.cpp is what
``test_e2e_math.py`` does): each problem gets a right answer, a wrong one, and two
answers that only restate the problem's expression (boxed, and as the last
expression of the text).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import math_verify
import pytest

from datagen.__main__ import run
from datagen.output.publish import load_output
from datagen.views import open_part
from verifiers.math_extract import normalize, prompt_expressions

from .conftest import ROOT, compose

SAMPLE = ROOT / "data" / "math_sample.jsonl"


def _traces(row: dict) -> list[str]:
    expression = re.search(r"\$(.+?)\$", row["problem"]).group(1)
    return [
        f"We work it out step by step. The final answer is $\\boxed{{{row['answer']}}}$.",
        f"First I get 64, then 560. So the value is ${expression}$.",
        f"Therefore the answer is $\\boxed{{{expression}}}$.",
        f"The final answer is $\\boxed{{{row['answer']} + 1}}$.",
    ]


@pytest.fixture(scope="module")
def restating_run(tmp_path_factory):
    rows = [json.loads(x) for x in SAMPLE.read_text().splitlines()]
    for row in rows:
        row["generations"] = _traces(row)
    path = tmp_path_factory.mktemp("src") / "traces.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose(
        "+pipeline=math",
        f"source.path={path}",
        "teacher=replay",
        f"teacher.path={path}",
        "teacher.response_field=generations",
        "generation.n=4",
        "run.progress=false",
    )
    summary = run(cfg, run_dir)
    return rows, run_dir, summary


def test_restated_traces_would_pass_math_verify_alone(restating_run):
    """The trap is real: math-verify evaluates the copied expression to the reference."""
    rows, _, _ = restating_run
    fooled = 0
    for row in rows:
        expression = re.search(r"\$(.+?)\$", row["problem"]).group(1)
        gold = math_verify.parse(f"${row['answer']}$", parsing_timeout=None)
        copy = math_verify.parse(f"${expression}$", parsing_timeout=None)
        fooled += math_verify.verify(gold, copy, timeout_seconds=None)
    assert fooled >= 6


def test_no_positive_restates_the_prompt(restating_run):
    rows, run_dir, summary = restating_run
    problems = {r["problem"]: r for r in rows}
    [verify_dir] = (run_dir / "stages").glob("*_verify")
    samples = open_part(str(verify_dir / "data")).to_list()
    positives = [s for s in samples if s["passed"] is True]
    assert len(positives) == summary["positives"] == len(rows)  # the right answers, all kept
    for sample in positives:
        prompt = sample["messages"][-1]["content"]
        [verdict] = [
            json.loads(v["details"]) for v in sample["verdicts"] if v["verifier"] == "math"
        ]
        assert normalize(verdict["extracted"]) not in prompt_expressions(prompt), verdict
        assert problems[prompt]["answer"] == verdict["extracted"]


def test_restated_traces_are_no_answer_and_set_aside(restating_run):
    rows, run_dir, summary = restating_run
    [verify_dir] = (run_dir / "stages").glob("*_verify")
    samples = open_part(str(verify_dir / "data")).to_list()
    restated = [s for s in samples if s["sample_index"] in (1, 2)]
    assert len(restated) == 2 * len(rows)
    for sample in restated:
        [verdict] = [
            json.loads(v["details"]) for v in sample["verdicts"] if v["verifier"] == "math"
        ]
        assert sample["passed"] is False and verdict["error"] == "no_answer", verdict
        assert "prompt" in verdict["reason"]
    positive = load_output(Path(run_dir) / "outputs" / "sft_positive")
    texts = [row["messages"][-1]["content"] for row in positive]
    assert not any("560" in t or "Therefore the answer is" in t for t in texts)
    assert summary["negatives"] == len(rows)  # the wrong answers; the restated ones set aside
