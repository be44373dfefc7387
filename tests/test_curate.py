"""Curation on real traces: two teachers and a student, all served by the replay teacher.

The traces are Qwen2.5-Math's labelled MATH generations (``fixtures/math``); the
problems are ones where its 8 traces disagree, so pass rates lie strictly between
0 and 1. Two replay teachers read them in two orders (by sample index, by reward
score), the student reads them by reward score too; math-verify grades all of
them for real. Every check recomputes its numbers from the datasets on disk.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import datasets
import pytest

from datagen.__main__ import run
from datagen.compose import resolve_config
from datagen.config import ConfigError, OutputConfig
from datagen.output.builders import build_outputs
from datagen.output.publish import load_output
from datagen.output.selection import select_by_length
from datagen.output.tokens import TokenCounter
from datagen.records import Sample
from datagen.views import open_part
from tests.helpers.replay_run import QWEN, smollm2_gguf

from .conftest import compose

MIXED = (6, 17, 28, 37, 54, 58)
"""``problem_idx`` of fixture problems whose stored traces are partly right, partly wrong."""
ALPHA, BETA = 2.0, 0.5
STAGE2 = 0.25


def write_source(path: Path) -> Path:
    rows: dict[int, dict] = {}
    for line in QWEN.read_text().splitlines():
        r = json.loads(line)
        if r["problem_idx"] in MIXED:
            rows.setdefault(
                r["problem_idx"],
                {"id": f"q{r['problem_idx']}", "problem": r["problem"], "answer": r["answer"]},
            )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows.values()))
    return path


def overrides(source: Path, *more: str) -> list[str]:
    q = str(QWEN)
    teachers = (
        f"teachers=[{{name:replay,label:by_index,path:'{q}',model:qwen-a,"
        f"order_field:sample_idx,generation:{{n:4}}}},"
        f"{{name:replay,label:by_score,path:'{q}',model:qwen-b,"
        f"order_field:rm_score,generation:{{n:3}}}}]"
    )
    return [
        "+pipeline=math_student",
        "pipeline.stages=[load,generate,verify,filter,student,emit]",
        f"source.path={source}",
        "run.progress=false",
        teachers,
        "student.backend.name=replay",
        f"+student.backend.path={q}",
        "+student.backend.model=qwen-student",
        "+student.backend.order_field=rm_score",
        "student.k=4",
        "output.curriculum=true",
        f"output.stage2_max_pass_rate={STAGE2}",
        "output.pair_policy=teacher_vs_student",
        "output.max_pairs_per_prompt=8",
        f"output.paced_alpha={ALPHA}",
        f"output.paced_beta={BETA}",
        f"output.tokenizer={smollm2_gguf()}",
        *more,
    ]


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("curate")
    source = write_source(root / "problems.jsonl")
    run_dir = root / "run"
    return run_dir, run(compose(*overrides(source)), run_dir)


def output(run_dir: Path, name: str) -> datasets.Dataset:
    return load_output(run_dir / "outputs" / name)


def final_samples(run_dir: Path) -> list[Sample]:
    data = next((run_dir / "stages").glob("*_emit")) / "data"
    return [Sample.from_row(r) for r in open_part(str(data))]


def student_rates(samples: list[Sample]) -> dict[str, float]:
    graded: dict[str, list[bool]] = defaultdict(list)
    for s in samples:
        if s.role == "student" and s.passed is not None:
            graded[s.problem_id].append(s.passed)
    return {pid: sum(v) / len(v) for pid, v in graded.items()}


def test_every_sample_keeps_its_teacher_and_a_unique_id(curated):
    run_dir, _ = curated
    samples = final_samples(run_dir)
    assert len({s.id for s in samples}) == len(samples)
    by_label = {(s.teacher, s.model, s.role) for s in samples}
    assert by_label == {
        ("by_index", "qwen-a", "teacher"),
        ("by_score", "qwen-b", "teacher"),
        ("student", "qwen-student", "student"),
    }
    # The two teachers read the same traces in different orders: different samples.
    first = {(s.problem_id, s.teacher): s.content for s in samples if s.sample_index == 0}
    assert any(
        first[(p, "by_index")] != first[(p, "by_score")] for p, t in first if t == "by_index"
    )


def test_teacher_table_equals_the_sft_sets_on_disk(curated):
    run_dir, summary = curated
    rows = [*output(run_dir, "sft_positive"), *output(run_dir, "sft_negative")]
    table = summary["teachers"]
    assert table["prompts"] == len(MIXED)
    assert [t["teacher"] for t in table["teachers"]] == ["by_index", "by_score"]
    solvers: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r["passed"]:
            solvers[r["problem_id"]].add(r["teacher"])
    for t in table["teachers"]:
        mine = [r for r in rows if r["teacher"] == t["teacher"]]
        right = sorted(r["response_tokens"] for r in mine if r["passed"])
        wrong = sorted(r["response_tokens"] for r in mine if not r["passed"])
        assert 0 < len(right) < len(mine)
        assert t["samples"] == len(mine) == (4 if t["teacher"] == "by_index" else 3) * len(MIXED)
        assert t["pass_rate"] == round(len(right) / len(mine), 4)
        assert t["correct_tokens"]["mean"] == round(sum(right) / len(right), 2)
        assert t["incorrect_tokens"]["median"] == (
            wrong[len(wrong) // 2]
            if len(wrong) % 2
            else (wrong[len(wrong) // 2 - 1] + wrong[len(wrong) // 2]) / 2
        )
        assert t["tokens_per_correct"] == round((sum(right) + sum(wrong)) / len(right), 2)
        assert t["cost_per_correct_usd"] == 0.0  # replayed traces cost nothing
        alone = sum(1 for who in solvers.values() if who == {t["teacher"]})
        assert t["only_solved_share"] == round(alone / len(MIXED), 4)
    card = (run_dir / "outputs" / "sft_positive" / "README.md").read_text()
    assert "## Teachers compared" in card and "## Student in the loop" in card


def test_pass_rates_are_the_students_and_paced_weight_follows_the_formula(curated):
    run_dir, summary = curated
    samples = final_samples(run_dir)
    rates = student_rates(samples)
    assert len(set(rates.values())) > 1  # the check below sees several pass rates
    teacher_rate: dict[str, list[bool]] = defaultdict(list)
    for s in samples:
        if s.role == "teacher" and s.passed is not None:
            teacher_rate[s.problem_id].append(s.passed)
    checked = 0
    for name in (
        "sft_positive",
        "sft_negative",
        "redi_pairs",
        "curriculum_stage1",
        "curriculum_stage2",
    ):
        for row in output(run_dir, name):
            p = rates[row["problem_id"]]
            assert row["pass_rate"] == p and row["graded"] == 4
            assert row["paced_weight"] == pytest.approx(p**ALPHA * (1 - p) ** BETA)
            graded = teacher_rate[row["problem_id"]]
            assert row["teacher_pass_rate"] == pytest.approx(sum(graded) / len(graded))
            checked += 1
    assert checked > 20
    assert summary["student"]["pass_rate"] == pytest.approx(
        sum(s.passed for s in samples if s.role == "student") / (4 * len(MIXED)), abs=1e-4
    )


def test_stage2_holds_exactly_the_hard_prompts_with_a_teacher_solution(curated):
    run_dir, _ = curated
    rates = student_rates(final_samples(run_dir))
    stage1, stage2 = output(run_dir, "curriculum_stage1"), output(run_dir, "curriculum_stage2")
    solved_by_teacher = set(output(run_dir, "sft_positive")["problem_id"])
    expected = {pid for pid in solved_by_teacher if rates[pid] <= STAGE2}
    assert 0 < len(expected) < len(solved_by_teacher)
    assert set(stage2["problem_id"]) == expected
    assert sorted(stage2["id"]) == sorted(r["id"] for r in stage1 if r["problem_id"] in expected)
    assert stage1["id"] == output(run_dir, "sft_positive")["id"]


def test_teacher_vs_student_pairs_trace_back_to_their_verdicts(curated):
    run_dir, _ = curated
    by_id = {s.id: s for s in final_samples(run_dir)}
    pairs = output(run_dir, "redi_pairs")
    assert len(pairs) > 0
    for row in pairs:
        chosen, rejected = by_id[row["chosen_sample_id"]], by_id[row["rejected_sample_id"]]
        assert chosen.role == "teacher" and chosen.teacher == row["chosen_teacher"]
        assert (
            rejected.role == "student" and rejected.teacher == row["rejected_teacher"] == "student"
        )
        assert chosen.passed is True and rejected.passed is False
        math_chosen = [v for v in chosen.verdicts if v.verifier == "math"]
        math_rejected = [v for v in rejected.verdicts if v.verifier == "math"]
        assert math_chosen[0].passed is True and math_rejected[0].passed is False
        assert chosen.problem_id == rejected.problem_id == row["problem_id"]
        assert chosen.messages == rejected.messages == row["prompt"]
        assert row["pair_policy"] == "teacher_vs_student"


@pytest.fixture(scope="module")
def counted(curated):
    run_dir, _ = curated
    counter = TokenCounter.from_spec(str(smollm2_gguf()))
    return final_samples(run_dir), counter


@pytest.mark.parametrize("policy,k", [("shortest", 1), ("k_shortest", 2)])
def test_length_rules_keep_the_shortest_correct_traces(curated, counted, policy, k):
    run_dir, _ = curated
    samples, counter = counted
    every = output(run_dir, "sft_positive")  # built with sft_selection=all
    tokens: dict[str, list[int]] = defaultdict(list)
    for r in every:
        tokens[r["problem_id"]].append(r["response_tokens"])
    cfg = OutputConfig(sft_selection=policy, sft_selection_k=k)
    kept = build_outputs(samples, cfg, 0, counter)["sft_positive"].dataset
    verdict = {s.id: s.passed for s in samples}
    assert all(verdict[i] is True for i in kept["id"])  # never an incorrect trace
    for pid, lengths in tokens.items():
        mine = sorted(r["response_tokens"] for r in kept if r["problem_id"] == pid)
        assert mine == sorted(lengths)[:k], pid
    assert len(kept) < len(every)


def test_length_rules_refuse_an_incorrect_trace(counted):
    samples, counter = counted
    wrong = [s for s in samples if s.passed is False][:1]
    right = [s for s in samples if s.passed is True and s.problem_id == wrong[0].problem_id]
    with pytest.raises(ValueError, match="not verified correct"):
        select_by_length([*right, *wrong], "shortest", 1, counter)


def test_shorter_correct_pairs_prefer_the_shorter_of_two_correct_traces(counted):
    samples, counter = counted
    cfg = OutputConfig(pair_policy="shorter_correct", max_pairs_per_prompt=3)
    pairs = build_outputs(samples, cfg, 0, counter)["redi_pairs"].dataset
    by_id = {s.id: s for s in samples}
    assert len(pairs) > 0
    for row in pairs:
        chosen, rejected = by_id[row["chosen_sample_id"]], by_id[row["rejected_sample_id"]]
        assert chosen.passed is True and rejected.passed is True
        assert chosen.role == rejected.role == "teacher"
        assert row["chosen_tokens"] < row["rejected_tokens"]


def test_student_filters_and_exact_curriculum_sizes(counted):
    samples, counter = counted
    rates = student_rates(samples)
    cfg = OutputConfig(curriculum=True, subset_sizes={"curriculum_stage2": 2})
    out = build_outputs(samples, cfg, 0, counter, student=True)
    assert len(out["curriculum_stage2"].dataset) == 2  # exact, as asked
    assert "curriculum_stage1" not in build_outputs(samples, OutputConfig(), 0, counter)
    cfg = OutputConfig(student_max_pass_rate=0.5, student_min_pass_rate=0.25)
    out = build_outputs(samples, cfg, 0, counter, student=True)
    kept = set(out["sft_negative"].dataset["problem_id"])
    assert kept and {rates[p] for p in kept} <= {0.25, 0.5}
    assert {p for p, r in rates.items() if 0.25 <= r <= 0.5} >= kept


def test_dropping_prompts_the_student_always_solves(counted):
    samples, counter = counted
    solved = next(s.problem_id for s in samples if s.role == "teacher" and s.passed)
    flipped = [
        Sample.from_row({**s.to_row(), "passed": True})
        if s.role == "student" and s.problem_id == solved
        else s
        for s in samples
    ]
    cfg = OutputConfig(student_drop_solved=True)
    out = build_outputs(flipped, cfg, 0, counter, student=True)["sft_positive"]
    assert solved not in set(out.dataset["problem_id"]) and len(out.dataset) > 0
    assert out.stats["left_out"]["student always solves"] > 0
    out = build_outputs(flipped, OutputConfig(), 0, counter, student=True)["sft_positive"]
    assert solved in set(out.dataset["problem_id"])


def make(*overrides: str):
    return resolve_config(compose("+pipeline=math", *overrides))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["teachers=[{name:local},{name:local}]"], "label"),
        (["teachers=[{name:nope}]"], "teachers\\[0\\].name"),
        (["teachers=[{name:local,generation:{n:0}}]"], "generation.n"),
        (["output.curriculum=true"], "needs a student"),
        (["output.pair_policy=teacher_vs_student"], "needs a student"),
        (["student.enabled=true", "student.label=local"], "also a teacher"),
        (["student.k=0"], "student.k"),
        (["output.sft_selection=longest"], "output.sft_selection"),
    ],
)
def test_bad_curation_settings_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make(*overrides)


def test_a_student_needs_its_stage_and_teachers_need_fixed_n(tmp_path):
    from datagen.preflight import check_curation

    config = make("student.enabled=true")
    with pytest.raises(ConfigError, match="no student stage"):
        check_curation(config, list(config.pipeline.stages))
    config = make("teachers=[{name:local,label:a},{name:local,label:b}]")
    with pytest.raises(ConfigError, match="generate_adaptive"):
        check_curation(config, ["load", "generate_adaptive", "emit"])
    entries = config.teachers
    assert [e.label for e in entries] == ["a", "b"]
    assert entries[0].generation == config.generation  # no overrides: the run's sampling


def test_one_teacher_keeps_its_ids_and_name():
    """The ``teacher:`` shorthand is unchanged: ids hash (problem, request) only."""
    from datagen.records import Problem, content_hash
    from datagen.teachers import build_teacher

    config = make("teacher=replay", f"teacher.path={QWEN}", "generation.n=1")
    first = json.loads(QWEN.read_text().splitlines()[0])
    problem = Problem("p", "", "math", [{"role": "user", "content": first["problem"]}], "420")
    plain = build_teacher(config.teacher, Path("."))
    labelled = build_teacher(config.teacher, Path("."), label="other")
    (a,) = plain.generate([problem], config.generation, 0)
    (b,) = labelled.generate([problem], config.generation, 0)
    assert a.teacher == "replay" and a.id == content_hash("p", a.request_key)
    assert b.teacher == "other" and b.request_key == a.request_key and b.id != a.id
