"""A conversation as the prompt (``messages_field``), end to end on the replay teacher.

The replay teacher (no model, no network) serves Qwen2.5-Math's stored traces for
MATH test problems (``fixtures/math``), matched on the conversation's last user turn;
decontamination, dedup, math-verify, filter and emit run for real. Two sources share
the run: the conversations, and the same kind of problems as plain single-turn rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from datagen.config import SourceConfig
from datagen.output.publish import load_output as open_output
from datagen.sources import read_source, to_messages
from datagen.summary import format_summary

from .conftest import ROOT

QWEN = ROOT / "tests" / "fixtures" / "math" / "traces_qwen25_math_cot_100.jsonl"
MIXED = (6, 17, 28, 37)
"""Problems whose 8 stored traces are partly right, partly wrong (so they make pairs)."""
PLAIN = (58, 70)
SYSTEM = "You are a careful tutor."


def qwen_problems() -> dict[int, dict]:
    out: dict[int, dict] = {}
    for line in QWEN.read_text().splitlines():
        row = json.loads(line)
        out.setdefault(row["problem_idx"], row)
    return out


def write_sources(folder: Path) -> tuple[Path, Path]:
    problems = qwen_problems()
    chats = []
    for idx in MIXED:
        p = problems[idx]
        chats.append(
            {
                "id": f"chat-{idx}",
                "conversation": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": "I am stuck on my homework. Can you help?"},
                    {"role": "assistant", "content": "Of course. What is the problem?"},
                    {"role": "user", "content": p["problem"]},
                ],
                "answer": p["answer"],
            }
        )
    bad_end = [*chats[0]["conversation"], {"role": "assistant", "content": "Let me see."}]
    chats.append({"id": "ends-with-assistant", "conversation": bad_end, "answer": "1"})
    chat_file = folder / "chats.jsonl"
    chat_file.write_text("\n".join(json.dumps(r) for r in chats) + "\n")
    plain = [
        {"id": f"plain-{i}", "problem": problems[i]["problem"], "answer": problems[i]["answer"]}
        for i in PLAIN
    ]
    plain_file = folder / "plain.jsonl"
    plain_file.write_text("\n".join(json.dumps(r) for r in plain) + "\n")
    return chat_file, plain_file


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory) -> tuple[Path, dict]:
    from hydra import compose, initialize_config_dir

    from datagen.__main__ import run

    folder = tmp_path_factory.mktemp("multiturn")
    chats, plain = write_sources(folder)
    sources = (
        f"+sources=[{{path: {chats}, name: chats, messages_field: conversation, "
        f"license: cc-by-4.0}}, {{path: {plain}, name: plain, license: mit, "
        "system_prompt: 'Please reason step by step.'}]"
    )
    overrides = [
        "+pipeline=math",
        sources,
        "teacher=replay",
        f"teacher.path={QWEN}",
        "teacher.label_field=correct",
        "teacher.order_field=sample_idx",
        "generation.n=8",
        "filter.max_repeated_ngram_fraction=1.0",
        "run.progress=false",
    ]
    run_dir = folder / "run"
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(config_name="config", overrides=overrides)
    return run_dir, run(cfg, run_dir)


def load_output(run_dir: Path, name: str) -> datasets.Dataset:
    return open_output(run_dir / "outputs" / name)


def test_pairs_share_the_whole_conversation_and_sft_rows_keep_the_earlier_turns(chat_run):
    run_dir, _ = chat_run
    pairs = load_output(run_dir, "redi_pairs")
    chat_pairs = [r for r in pairs if r["source"] == "chats"]
    graded = {
        passed: {r["problem_id"] for r in load_output(run_dir, name) if r["source"] == "chats"}
        for passed, name in ((True, "sft_positive"), (False, "sft_negative"))
    }
    both = graded[True] & graded[False]
    assert len(both) >= 2 and {r["problem_id"] for r in chat_pairs} == both
    for row in chat_pairs:
        roles = [m["role"] for m in row["prompt"]]
        assert roles == ["system", "user", "assistant", "user"]
        assert row["prompt"][0]["content"] == SYSTEM  # the conversation's own system turn
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
    positives = load_output(run_dir, "sft_positive")
    chat_rows = [r for r in positives if r["source"] == "chats"]
    assert chat_rows
    for row in chat_rows:
        assert [m["role"] for m in row["messages"]] == [
            "system",
            "user",
            "assistant",
            "user",
            "assistant",
        ]
    plain_rows = [r for r in positives if r["source"] == "plain"]
    assert plain_rows and all(r["messages"][0]["role"] == "system" for r in plain_rows)


def test_a_conversation_not_ending_with_the_user_is_set_aside_naming_its_row(chat_run):
    run_dir, summary = chat_run
    (reject,) = [json.loads(x) for x in (run_dir / "rejects.jsonl").read_text().splitlines()]
    assert reject["line"] == len(MIXED) + 1 and reject["source"] == "chats"
    assert "last turn is 'assistant'" in reject["reason"] and reject["file"].endswith("chats.jsonl")
    assert summary["funnel"]["by_source"]["chats"]["malformed"] == 1


def test_the_per_source_funnel_adds_up_to_the_rows_on_disk(chat_run):
    run_dir, summary = chat_run
    by_source = summary["funnel"]["by_source"]
    assert set(by_source) == {"chats", "plain"}
    assert by_source["chats"]["loaded"] == len(MIXED) and by_source["plain"]["loaded"] == 2
    for name in ("sft_positive", "sft_negative", "redi_pairs"):
        on_disk = load_output(run_dir, name)
        for src in by_source:
            assert by_source[src]["emitted"][name] == sum(s == src for s in on_disk["source"])
        assert sum(f["emitted"][name] for f in by_source.values()) == summary[name]
    for key, total_key in (
        ("loaded", "problems_loaded"),
        ("generated", "problems_generated"),
        ("samples", "samples"),
        ("positive", "positives"),
        ("negative", "negatives"),
        ("malformed", "malformed_rows"),
    ):
        assert sum(f[key] for f in by_source.values()) == summary[total_key], key
    assert summary["funnel"]["by_domain"]["math"]["loaded"] == summary["problems_loaded"]
    lines = format_summary(summary).splitlines()
    (chats,) = [line for line in lines if line.strip().startswith("source chats")]
    assert f"loaded {len(MIXED)}" in chats and "malformed 1" in chats
    card = (run_dir / "outputs" / "redi_pairs" / "README.md").read_text()
    assert "## Funnel by source and domain" in card
    assert "| chats | cc-by-4.0 |" in card and "| plain | mit |" in card


def test_conversation_checks_name_the_turn():
    with pytest.raises(ValueError, match=r"\[1\]\.role is 'robot'"):
        to_messages([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}], "c")
    with pytest.raises(ValueError, match="non-empty list"):
        to_messages("hello", "c")
    with pytest.raises(ValueError, match=r"\[0\]\.content"):
        to_messages([{"role": "user", "content": " "}], "c")


def test_the_teacher_sees_the_whole_conversation_with_the_source_system_prompt(tmp_path):
    path = tmp_path / "c.jsonl"
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    row = {"id": "1", "m": [*turns, {"role": "user", "content": "What is 2+2?"}], "answer": "4"}
    path.write_text(json.dumps(row) + "\n")
    cfg = SourceConfig(path=str(path), messages_field="m", system_prompt="Be brief.")
    (problem,) = read_source(cfg, cfg.system_prompt).problems
    assert [m["role"] for m in problem.messages] == ["system", "user", "assistant", "user"]
    assert problem.prompt == "What is 2+2?"  # decontamination reads the last user turn
    assert "Hello" in problem.conversation_text  # dedup compares the whole conversation
