"""The report's columnar tables against the per-sample loops they replaced (issue 19).

The reference loops below are the old ``datagen.report`` code, kept here as the oracle;
the rows are built to hit their corners: a verifier named twice on one sample, an
``ensemble`` verdict, undecided verdicts, a sample whose problem is unknown, and a first
sample whose problem has no difficulty label (that table then comes after the buckets).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import datasets
import pytest

from datagen.output.difficulty import BUCKETS, difficulty, prompt_stats
from datagen.records import Problem, Sample, Verdict
from datagen.report_tables import disagreements, pass_rate_tables, problem_labels, sample_frame


def old_pass_rates(samples: list[Sample], problems: dict[str, Problem], edges) -> dict:
    by: dict = defaultdict(lambda: defaultdict(list))
    buckets = {pid: difficulty(st.pass_rate, edges) for pid, st in prompt_stats(samples).items()}
    for s in samples:
        problem = problems.get(s.problem_id)
        meta = problem.metadata if problem else {}
        by["source"][str(meta.get("source") or (problem.source if problem else "?"))].append(
            s.passed
        )
        by["domain"][s.domain].append(s.passed)
        by["teacher"][f"{s.teacher} ({s.model})"].append(s.passed)
        level = next((meta[f] for f in ("level", "difficulty") if meta.get(f) is not None), None)
        if level is not None:
            by["source difficulty"][str(level)].append(s.passed)
        by["difficulty bucket"][buckets.get(s.problem_id, "ungraded")].append(s.passed)
    tables = {}
    for name, groups in by.items():
        rows = []
        for key in sorted(groups):
            v = groups[key]
            pos, neg = sum(p is True for p in v), sum(p is False for p in v)
            rate = round(pos / (pos + neg), 4) if pos + neg else None
            unv = sum(p is None for p in v)
            rows.append(
                {"group": key, "positive": pos, "negative": neg, "unverifiable": unv,
                 "pass_rate": rate}
            )  # fmt: skip
        tables[name] = rows
    order = {b: i for i, b in enumerate(BUCKETS)}
    tables["difficulty bucket"].sort(key=lambda r: order.get(r["group"], len(order)))
    return tables


def old_disagreements(samples: list[Sample], examples: int = 5) -> dict:
    pairs: Counter = Counter()
    found, compared = [], 0
    for s in samples:
        decided = {v.verifier: v.passed for v in s.verdicts if v.verifier != "ensemble"}
        decided = {k: v for k, v in decided.items() if v is not None}
        if len(decided) < 2:
            continue
        compared += 1
        if len(set(decided.values())) > 1:
            pairs[" vs ".join(sorted(decided))] += 1
            found.append({"sample": s.id, "problem": s.problem_id, "verdicts": decided})
    return {"compared": compared, "disagreements": len(found), "by_verifiers": dict(pairs),
            "examples": found[:examples]}  # fmt: skip


VERDICT_SETS = [
    [],
    [("math", True)],
    [("math", True), ("judge", False), ("ensemble", True)],
    [("judge", None), ("math", False), ("code", True)],
    [("math", True), ("math", False), ("judge", False)],  # the last math verdict counts
    [("math", False), ("judge", None)],
    [("zeta", True), ("alpha", False)],
    [("math", True), ("judge", True)],
]


def build(first_labelled: bool) -> tuple[list[Sample], list[Problem]]:
    metas = [{}, {"level": "Level 3"}, {"difficulty": 2, "source": "olympiad"}, {"level": None}]
    if first_labelled:
        metas = metas[1:] + metas[:1]
    problems = [
        Problem(f"p{i}", f"src{i % 2}", "math", [], "1", metadata=m) for i, m in enumerate(metas)
    ]
    samples = []
    for i in range(40):
        verdicts = [Verdict(v, "1", p) for v, p in VERDICT_SETS[(i * 3) % len(VERDICT_SETS)]]
        passed = [True, False, None][i % 3] if i % 7 else True
        samples.append(
            Sample(f"s{i}", f"p{i % 5}", ["math", "code"][i % 2], [], "1", f"t{i % 2}", "m",
                   i, verdicts=verdicts, passed=passed)
        )  # fmt: skip
    return samples, problems


def as_dataset(records) -> datasets.Dataset:
    return datasets.Dataset.from_list(
        [r.to_row() for r in records], features=type(records[0]).FEATURES
    )


@pytest.mark.parametrize("first_labelled", [False, True])
def test_tables_equal_the_per_sample_loops(first_labelled):
    samples, problems = build(first_labelled)
    data = as_dataset(samples)
    labels = problem_labels(as_dataset(problems))
    new = pass_rate_tables(sample_frame(data), labels, (0.3, 0.7))
    old = old_pass_rates(samples, {p.id: p for p in problems}, (0.3, 0.7))
    assert json.dumps(new) == json.dumps(old)  # same keys in the same order
    assert list(new)[3] == ("source difficulty" if first_labelled else "difficulty bucket")
    assert json.dumps(disagreements(data, examples=3)) == json.dumps(old_disagreements(samples, 3))
    assert disagreements(data)["disagreements"] > 3  # the cases above do disagree
    # As a stage hands it over: several chunks, each a slice of a larger array.
    half = len(samples) // 2
    pieces = datasets.concatenate_datasets([as_dataset(samples[:half]), as_dataset(samples[half:])])
    sliced = datasets.Dataset(
        datasets.table.InMemoryTable(pieces.data.table.slice(1)), info=pieces.info
    )
    assert sliced.data.table.column("verdicts").num_chunks == 2
    want = old_disagreements(samples[1:], 3)
    assert json.dumps(disagreements(sliced, examples=3)) == json.dumps(want)


def test_no_samples_no_tables():
    assert pass_rate_tables(sample_frame(None), problem_labels(None), (0.3, 0.7)) == {}
    assert disagreements(None)["compared"] == 0
