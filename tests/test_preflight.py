"""Validate everything at start: bad values name their key; missing resources stop the run
before the first stage (no stage folder is ever written)."""

from __future__ import annotations

import json
import time

import pytest

from datagen.__main__ import run
from datagen.config import ConfigError

from .conftest import compose

OPENAI = ("teacher=openai", "teacher.model=m", "teacher.api_key_env=null")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ((*OPENAI, "teacher.timeout=nan"), "teacher.timeout"),
        ((*OPENAI, "teacher.retry_after_max=-5"), "teacher.retry_after_max"),
        ((*OPENAI, "teacher.base_url=http://"), "teacher.base_url"),
        ((*OPENAI, "teacher.base_url=http://host:99999/v1"), "teacher.base_url"),
        ((*OPENAI, "teacher.stall_timeout=-1"), "teacher.stall_timeout"),
        ((*OPENAI, "teacher.price.prompt_per_million=inf"), "teacher.price.prompt_per_million"),
        (("run.generate_batch_size=0",), "run.generate_batch_size"),
        (("run.max_failed_share=1.5",), "run.max_failed_share"),
        (("generation.temperature=nan",), "generation.temperature"),
        (("generation.top_p=inf",), "generation.top_p"),
        (("dedup.threshold=nan",), "dedup.threshold"),
        (("output.difficulty_edges=[0.3,nan]",), "output.difficulty_edges"),
        (("filter.max_repeated_ngram_fraction=nan",), "filter.max_repeated_ngram_fraction"),
        (("pipeline.stages=[]",), "pipeline.stages"),
    ],
)
def test_bad_values_are_refused_naming_the_key(make_config, overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")):
        make_config("+pipeline=math", *overrides)


def source_file(tmp_path, rows=None):
    path = tmp_path / "p.jsonl"
    rows = rows or [
        {"id": str(i), "problem": f"What is {i}+1?", "answer": str(i + 1)} for i in range(3)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def run_fails(tmp_path, *overrides, match):
    run_dir = tmp_path / "run"
    cfg = compose("+pipeline=math", "run.progress=false", *overrides)
    with pytest.raises(ConfigError, match=match) as info:
        run(cfg, run_dir)
    assert not (run_dir / "stages").exists()  # stopped before the first stage
    assert "\n" not in str(info.value)  # one line
    return str(info.value)


def test_unset_api_key_is_found_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR_15", raising=False)
    run_fails(
        tmp_path,
        f"source.path={source_file(tmp_path)}",
        "teacher=openai",
        "teacher.model=m",
        "teacher.api_key_env=NO_SUCH_KEY_VAR_15",
        match="NO_SUCH_KEY_VAR_15 is not set",
    )


def test_missing_tokenizer_is_found_before_anything_runs(tmp_path):
    run_fails(
        tmp_path,
        f"source.path={source_file(tmp_path)}",
        f"output.tokenizer={tmp_path / 'no-such-tokenizer'}",
        match="output.tokenizer",
    )


def test_a_rank_rule_under_verify_is_found_before_anything_runs(tmp_path):
    run_fails(
        tmp_path,
        f"source.path={source_file(tmp_path)}",
        "verifier=reward",
        "verifier.model=some/reward-model",
        match="verify_groups instead of verify",
    )


def test_a_prompt_field_absent_from_the_source_is_found_before_anything_runs(tmp_path):
    message = run_fails(
        tmp_path,
        f"source.path={source_file(tmp_path)}",
        "source.prompt_field=question",
        match=r"source\.prompt_field='question': no such field",
    )
    assert "['answer', 'id', 'problem']" in message


def test_an_empty_stage_list_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"pipeline\.stages is empty"):
        run(compose("+pipeline=math", "pipeline.stages=[]"), tmp_path / "run")


def test_a_hub_name_while_offline_is_one_line_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    message = run_fails(
        tmp_path,
        "source.path=nobody-15/no-such-dataset",
        match=r"source\.path='nobody-15/no-such-dataset'.*offline",
    )
    assert time.monotonic() - started < 20  # no half a minute of retries
    assert "Traceback" not in message
