"""Two teachers and a student, all the real embedded model, on the bundled math sample.

No mocks: the local teacher (SmolLM2) generates at two temperatures as two teachers,
and once more as the student; math-verify grades all of them. Kept short (two
problems, short generations, one module-scoped run, llama.cpp: ``engine=llama_cpp``, in
the dev extra, about 1.8x faster than the default transformers engine, which
tests/test_e2e_math.py's subprocess runs cover) for the suite's time budget.
Every check recomputes its numbers from the datasets the run left on disk.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import datasets
import pytest

from datagen.__main__ import run
from datagen.output.publish import load_output
from datagen.records import Sample
from datagen.views import open_part

from .conftest import ROOT, compose

ALPHA, BETA = 1.5, 0.5
STAGE2 = 0.5


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("e2e_curate")
    source = root / "problems.jsonl"
    # binom(8,0) and tan 0 (lines 2-3): on llama.cpp at these settings they give the
    # positives, the stage-2 rows and the teacher-vs-student pairs; sin 0 and binom(5,1)
    # gave none of those, for half of the run's time.
    lines = (ROOT / "data" / "math_sample.jsonl").read_text().splitlines()[1:3]
    source.write_text("\n".join(lines))
    cfg = compose(
        "+pipeline=math_student",
        "pipeline.stages=[load,generate,verify,filter,student,emit]",
        f"source.path={source}",
        "run.progress=false",
        "generation.max_tokens=192",  # room for a finished (usable) correct trace
        "filter.drop_truncated=false",  # short traces: keep them in the table's counts
        "teachers=[{name:local,engine:llama_cpp,label:cold,generation:{temperature:0.2,n:2}},"
        "{name:local,engine:llama_cpp,label:hot,generation:{temperature:1.0,n:2}}]",
        "+student.backend.engine=llama_cpp",
        "student.k=2",
        "student.temperature=0.7",
        "student.max_tokens=96",  # the student's wrong answers may be cut off
        "output.curriculum=true",
        f"output.stage2_max_pass_rate={STAGE2}",
        "output.pair_policy=teacher_vs_student",
        f"output.paced_alpha={ALPHA}",
        f"output.paced_beta={BETA}",
    )
    run_dir = root / "run"
    return run_dir, run(cfg, run_dir)


def output(run_dir: Path, name: str) -> datasets.Dataset:
    return load_output(run_dir / "outputs" / name)


def final(run_dir: Path) -> list[Sample]:
    data = next((run_dir / "stages").glob("*_emit")) / "data"
    return [Sample.from_row(r) for r in open_part(str(data))]


def test_teacher_table_equals_the_samples_on_disk(finished):
    run_dir, summary = finished
    samples = final(run_dir)
    teach = [s for s in samples if s.role == "teacher"]
    assert {s.teacher for s in teach} == {"cold", "hot"}
    assert {s.teacher for s in samples if s.role == "student"} == {"student"}
    assert len({s.id for s in samples}) == len(samples)
    table = summary["teachers"]
    assert json.loads((run_dir / "summary.json").read_text())["teachers"] == table
    common = set.intersection(
        *({s.problem_id for s in teach if s.teacher == t} for t in ("cold", "hot"))
    )
    assert table["prompts"] == len(common) > 0
    solvers: dict[str, set[str]] = defaultdict(set)
    for s in teach:
        if s.passed and s.problem_id in common:
            solvers[s.problem_id].add(s.teacher)
    for row in table["teachers"]:
        mine = [s for s in teach if s.teacher == row["teacher"] and s.problem_id in common]
        right = [s.completion_tokens for s in mine if s.passed is True]
        wrong = [s.completion_tokens for s in mine if s.passed is False]
        assert row["samples"] == len(mine) and row["graded"] == len(right) + len(wrong)
        graded = len(right) + len(wrong)
        assert row["pass_rate"] == (round(len(right) / graded, 4) if graded else None)
        assert row["incorrect_tokens"]["mean"] == (
            round(sum(wrong) / len(wrong), 2) if wrong else None
        )
        assert row["correct_tokens"]["mean"] == (
            round(sum(right) / len(right), 2) if right else None
        )
        total = sum(s.completion_tokens for s in mine)
        assert row["tokens_per_correct"] == (round(total / len(right), 2) if right else None)
        alone = sum(1 for who in solvers.values() if who == {row["teacher"]})
        assert row["only_solved_share"] == round(alone / len(common), 4)
    assert (
        "## Teachers compared" in (run_dir / "outputs" / "sft_negative" / "README.md").read_text()
    )


def test_rows_carry_the_students_pass_rate_and_its_paced_weight(finished):
    run_dir, _ = finished
    graded: dict[str, list[bool]] = defaultdict(list)
    for s in final(run_dir):
        if s.role == "student" and s.passed is not None:
            graded[s.problem_id].append(s.passed)
    rows = 0
    for name in (
        "sft_positive",
        "sft_negative",
        "redi_pairs",
        "curriculum_stage1",
        "curriculum_stage2",
    ):
        for row in output(run_dir, name):
            votes = graded.get(row["problem_id"])
            p = sum(votes) / len(votes) if votes else None
            assert row["pass_rate"] == p
            expected = None if p is None else p**ALPHA * (1 - p) ** BETA
            assert row["paced_weight"] == pytest.approx(expected)
            rows += 1
    assert rows > 0


def test_stage2_and_the_pairs_follow_their_definitions(finished):
    run_dir, _ = finished
    samples = final(run_dir)
    by_id = {s.id: s for s in samples}
    graded: dict[str, list[bool]] = defaultdict(list)
    for s in samples:
        if s.role == "student" and s.passed is not None:
            graded[s.problem_id].append(s.passed)
    positives = output(run_dir, "sft_positive")
    expected = {
        p
        for p in set(positives["problem_id"])
        if graded.get(p) and sum(graded[p]) / len(graded[p]) <= STAGE2
    }
    assert expected, "no positive the student found hard: the stage-2 check would be empty"
    assert set(output(run_dir, "curriculum_stage2")["problem_id"]) == expected
    assert output(run_dir, "curriculum_stage1")["id"] == positives["id"]
    pairs = output(run_dir, "redi_pairs")
    assert len(pairs) > 0, "no teacher-vs-student pair: the provenance check would be empty"
    for row in pairs:
        chosen, rejected = by_id[row["chosen_sample_id"]], by_id[row["rejected_sample_id"]]
        assert (chosen.role, chosen.passed) == ("teacher", True)
        assert (rejected.role, rejected.passed) == ("student", False)
        assert chosen.problem_id == rejected.problem_id == row["problem_id"]
