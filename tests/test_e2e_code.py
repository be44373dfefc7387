"""The code pipeline end to end: the real local teacher writes code, the sandbox runs it."""

from __future__ import annotations

import json

import datasets
import pytest

from datagen.__main__ import run
from verifiers.code import extract_code
from verifiers.code import verify as run_tests

from .conftest import ROOT, assert_funnel_adds_up, compose


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("code_run")
    cfg = compose(
        "+pipeline=code",
        "run.limit=3",
        "generation.n=2",
        "generation.max_tokens=160",
        "run.progress=false",
    )
    return run_dir, run(cfg, run_dir)


def test_code_pipeline_emits_three_datasets_whose_labels_hold(finished_run):
    run_dir, summary = finished_run
    assert_funnel_adds_up(summary, samples_per_prompt=2)
    for name in ("sft_positive", "sft_negative", "redi_pairs"):
        assert (run_dir / "outputs" / name / "README.md").exists()
    specs = {
        json.loads(line)["problem"]: json.loads(line)["tests"]
        for line in (ROOT / "data" / "code_sample.jsonl").read_text().splitlines()
    }
    for name, expected in (("sft_positive", True), ("sft_negative", False)):
        ds = datasets.load_from_disk(str(run_dir / "outputs" / name / "arrow"))
        for row in ds:
            prompt = row["messages"][-2]["content"]
            code = extract_code(row["messages"][-1]["content"])
            assert run_tests(code, specs[prompt]).passed is expected


def test_sandbox_isolation_is_recorded_on_every_verdict(finished_run):
    run_dir, _ = finished_run
    final = datasets.load_from_disk(str(sorted((run_dir / "stages").glob("*_verify"))[0] / "data"))
    for verdicts in final["verdicts"]:
        details = json.loads(verdicts[0]["details"])
        if details.get("failure") != "no_answer":
            assert details["isolation"].startswith("bwrap")
