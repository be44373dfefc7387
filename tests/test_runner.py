"""Runner: atomic per-batch shards, manifest skip, resume of an unfinished stage."""

from __future__ import annotations

import json

import pytest

from datagen.records import Problem
from datagen.runner import Runner
from datagen.stages import STAGES, Stage
from datagen.stages.base import merge_stats
from datagen.views import open_part


class Boom(RuntimeError):
    pass


def make_source(tmp_path, n=10):
    path = tmp_path / "p.jsonl"
    rows = [
        {"id": str(i), "problem": f"Problem number {i}: compute {i}+1.", "answer": str(i + 1)}
        for i in range(n)
    ]
    rows.append({"id": "dup", "problem": "problem NUMBER 0:  compute 0+1.", "answer": "1"})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    return path


def counting_stage(calls: list[int], fail_on_batch: int | None):
    """A problem->problem stage that records each batch and can crash mid-stage."""

    def mark(batch: list[Problem], ctx, *, cfg) -> list[Problem]:
        n = len(calls)
        if fail_on_batch is not None and n == fail_on_batch:
            calls.append(-1)
            raise Boom("killed mid-stage")
        calls.append(len(batch))
        for p in batch:
            p.metadata["marked"] = True
        return batch

    return Stage("mark", mark, "problem", "problem", ("run.seed",))


def test_resume_runs_only_unfinished_batches(tmp_path, make_config):
    cfg = make_config(
        "+pipeline=math",
        f"source.path={make_source(tmp_path)}",
        "run.batch_size=3",
        "decontam=none",
        "run.progress=false",
    )
    run_dir = tmp_path / "run"
    calls: list[int] = []
    stages = [STAGES["load"], STAGES["dedup"], counting_stage(calls, fail_on_batch=2)]
    with pytest.raises(Boom):
        Runner(cfg, run_dir, stages).run()
    assert calls == [3, 3, -1]  # two batches finished, third crashed
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"load", "dedup"}

    calls2: list[int] = []
    results = Runner(cfg, run_dir, [*stages[:2], counting_stage(calls2, None)]).run()
    assert calls2 == [3, 1]  # only the two unfinished batches of 10 rows
    assert [r.skipped for r in results] == [True, True, False]
    out = open_part(str(run_dir / "stages" / "02_mark" / "data"))
    assert len(out) == 10 and all(json.loads(m)["marked"] for m in out["metadata"])

    calls3: list[int] = []
    results = Runner(cfg, run_dir, [*stages[:2], counting_stage(calls3, None)]).run()
    assert calls3 == [] and all(r.skipped for r in results)


def test_set_aside_rows_and_rejects_are_kept(tmp_path, make_config):
    cfg = make_config(
        "+pipeline=math",
        f"source.path={make_source(tmp_path)}",
        "decontam=none",
        "run.progress=false",
    )
    run_dir = tmp_path / "run"
    results = Runner(cfg, run_dir, [STAGES["load"], STAGES["dedup"]]).run()
    assert (results[0].rows_out, results[1].rows_out, results[1].rows_set_aside) == (11, 10, 1)
    aside = open_part(str(run_dir / "stages" / "01_dedup" / "duplicates"))
    assert aside["reject_reason"] == ["duplicate: exact"]
    rejects = [json.loads(x) for x in (run_dir / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == 1 and rejects[0]["line"] == 12


def test_changed_late_config_reruns_only_late_stages(tmp_path, make_config):
    src = make_source(tmp_path)
    base = ("+pipeline=math", f"source.path={src}", "decontam=none", "run.progress=false")
    run_dir = tmp_path / "run"
    stages = [STAGES["load"], STAGES["dedup"]]
    Runner(make_config(*base), run_dir, stages).run()
    results = Runner(make_config(*base, "dedup.method=none"), run_dir, stages).run()
    assert [r.skipped for r in results] == [True, False]
    assert results[1].rows_out == 11


def test_stage_chain_is_checked_before_any_work(tmp_path, make_config):
    cfg = make_config("+pipeline=math")
    with pytest.raises(ValueError, match=r"reorder pipeline\.stages"):
        Runner(cfg, tmp_path, [STAGES["load"], STAGES["verify"]])


def test_merge_stats_adds_counters_from_two_processes():
    # What a Ray run does with the counters of its actors: the totals of one process.
    one = {"verify": {"passed": 2, "cost_usd": 0.1, "by": {"math": 2}}, "filter": {"length": 1}}
    two = {"verify": {"passed": 3, "cost_usd": 0.2, "by": {"math": 1, "code": 4}}}
    assert merge_stats(one, two) == {
        "verify": {"passed": 5, "cost_usd": 0.3, "by": {"math": 3, "code": 4}},
        "filter": {"length": 1},
    }
