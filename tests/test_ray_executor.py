"""The same stages on Ray Data (a real local Ray cluster) give the same datasets and
counters as locally."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from datagen.output.publish import load_output, output_file
from datagen.runner import Runner
from datagen.stages import STAGES
from datagen.views import open_part

from .conftest import ROOT

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_executor_matches_local(tmp_path, make_config, local_ray):
    src = tmp_path / "p.jsonl"
    rows = [
        {"id": str(i), "problem": f"Find the value of {i} times {i + 3}.", "answer": "1"}
        for i in range(40)
    ]
    rows[7]["problem"] = rows[3]["problem"]  # a duplicate
    bench = ROOT / "data" / "benchmarks" / "gsm8k_test.jsonl"
    leak = json.loads(bench.read_text().splitlines()[0])
    rows[11]["problem"] = leak["problem"]  # a benchmark leak
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    stages = [STAGES["load"], STAGES["decontaminate"], STAGES["dedup"]]
    outputs = {}
    for executor in ("local", "ray"):
        cfg = make_config(
            "+pipeline=math",
            f"source.path={src}",
            f"run.executor={executor}",
            "run.batch_size=8",
            "run.ray_batch_size=4",
            "run.progress=false",
        )
        run_dir = tmp_path / executor
        results = Runner(cfg, run_dir, stages).run()
        kept = open_part(str(run_dir / "stages" / "02_dedup" / "data"))
        aside = [
            open_part(str(run_dir / "stages" / d))["reject_reason"]
            for d in ("01_decontaminate/contaminated", "02_dedup/duplicates")
        ]
        counts = [r.rows_out for r in results]
        outputs[executor] = (kept["id"], aside, counts, [r.stats for r in results])
    assert outputs["ray"] == outputs["local"]
    _, aside, counts, stats = outputs["ray"]
    assert counts == [40, 39, 38] and len(aside[0]) == 1 and len(aside[1]) == 1
    # The decontaminate counter was added inside Ray actors and reached the runner.
    assert stats[1] == {"gsm8k_test:exact": 1}, stats


@pytest.mark.parametrize(
    ("stage", "overrides", "gpus"),
    [
        ("verify", ["verifier=reward", "verifier.model=/rm", "verifier.device=cuda"], 1.0),
        ("verify", ["verifier=reward", "verifier.model=/rm", "verifier.device=cpu"], 0.0),
        ("generate_adaptive", ["teacher=vllm", "teacher.model=/m"], 1.0),
        ("generate", ["teacher=vllm", "teacher.model=/m"], 1.0),
        ("generate", [], 0.0),  # the local llama.cpp teacher runs on CPU
        ("verify", [], 0.0),  # math-verify
    ],
)
def test_a_stage_that_declares_a_gpu_asks_ray_for_it(
    make_config, local_ray, tmp_path, stage, overrides, gpus
):
    # This machine has no GPU, so an actor asking for one would wait forever: the test
    # reads what the executor would ask Ray for, from the stage's declaration.
    from datagen.context import StageContext
    from datagen.executors import apply_stage
    from datagen.ray_executor import RayExecutor

    cfg = make_config(
        "+pipeline=math",
        "run.executor=ray",
        "run.ray_gpus_per_actor=1",
        "run.ray_cpus_per_actor=0.5",
        *overrides,
    )
    executor = RayExecutor(StageContext(config=cfg, run_dir=tmp_path), apply_stage)
    assert executor.actor_options(STAGES[stage]) == {"num_cpus": 0.5, "num_gpus": gpus}
    assert executor.spreads(STAGES[stage])
    assert not executor.spreads(STAGES["dedup"]) and not executor.spreads(STAGES["emit"])


def _math_source(tmp_path, n: int):
    """``n`` sums; the server always answers 42, so a third of them pass verification."""
    path = tmp_path / "sums.jsonl"
    rows = [
        {"id": f"q{i:03d}", "problem": f"What is {i} + 7?", "answer": "42" if i % 3 else str(i + 7)}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _pipeline_overrides(source, base_url: str, executor: str) -> list[str]:
    return [
        "+pipeline=math",
        f"source.path={source}",
        "teacher=openai",
        "teacher.model=stub",
        f"teacher.base_url={base_url}",
        "teacher.api_key_env=null",
        "teacher.concurrency=4",
        "generation.n=2",
        "run.generate_batch_size=2",  # finished prompts per shard
        "run.batch_size=8",
        "run.ray_batch_size=4",
        "run.progress=false",
        f"run.executor={executor}",
    ]


def _outputs(run_dir) -> dict:
    """Every dataset the run wrote: each stage part (whole or a view) and each output."""
    found = {}
    for part in sorted((run_dir / "stages").glob("*/*")):
        if part.is_dir() and not part.name.startswith("."):
            found[str(part.relative_to(run_dir))] = open_part(str(part)).to_list()
    for folder in sorted((run_dir / "outputs").iterdir()):
        if output_file(folder).exists():
            found[str(folder.relative_to(run_dir))] = load_output(folder).to_list()
    return found


@pytest.mark.slow
def test_full_pipeline_on_actors_equals_local_and_a_killed_run_resends_nothing(
    tmp_path, make_config, local_ray
):
    # The model server is tests/helpers/latency_server.py (a real HTTP server on
    # 127.0.0.1 speaking the OpenAI chat API; canned text, delays spread so requests
    # finish out of order and some are in flight at the kill). Everything else is real:
    # Ray actors run decontaminate, generate (the openai SDK, the request cache),
    # verify (math-verify) and filter; the runner runs load, dedup and emit.
    from tests.helpers.latency_server import Latency, LatencyServer

    n_problems, n = 20, 2
    source = _math_source(tmp_path, n_problems)
    stages = [STAGES[s] for s in make_config("+pipeline=math").pipeline.stages]
    latency = Latency(median=0.05, sigma=1.0, tail_share=0.2, tail_factor=20)
    with LatencyServer(latency) as server:
        runs = {}
        for executor in ("local", "ray"):
            cfg = make_config(*_pipeline_overrides(source, server.base_url, executor))
            results = Runner(cfg, tmp_path / executor, stages).run()
            runs[executor] = (_outputs(tmp_path / executor), [r.rows_out for r in results])
        stats = {r.name: r.stats for r in results}
        assert runs["ray"] == runs["local"]
        assert any("outputs" in k for k in runs["ray"][0]), runs["ray"][0].keys()
        # The teacher's counters came back from the actors; verify graded every sample.
        assert stats["generate"]["requests_sent"] == n_problems * n
        assert server.counts.as_dict()["distinct"] == n_problems * n

        # `python -m datagen` as its own Ray driver on the same cluster, killed with
        # SIGKILL while its generate actors are answering, then run again.
        run_dir = tmp_path / "killed"
        db = run_dir / "cache" / "requests.sqlite"
        address = ray.get_runtime_context().gcs_address
        args = [*_pipeline_overrides(source, server.base_url, "ray"), f"run.ray_address={address}"]
        cmd = [sys.executable, "-m", "datagen", *args, f"hydra.run.dir={run_dir}"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        before = dict(server.counts.by_request)
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if len(_cache_keys(db)) >= n_problems * n // 4:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # Ray ends a dead driver's actors; one may still store an answer it was waiting
        # for, so the cache is read once it has stopped changing (the longest delay is 1 s).
        stored, steady = _cache_keys(db), 0
        while steady < 4:
            time.sleep(1)
            now = _cache_keys(db)
            steady, stored = (steady + 1, now) if now == stored else (0, now)
        assert 0 < len(stored) < n_problems * n, "the kill landed outside generation"
        sent_then = {k: v - before.get(k, 0) for k, v in server.counts.by_request.items()}
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        after = server.counts.by_request
        resent = {
            k: after[k] - before.get(k, 0) - sent_then.get(k, 0)
            for k in after
            if after[k] - before.get(k, 0) - sent_then.get(k, 0) > 0
        }
    # The rerun asked only for what the cache did not hold, each once.
    assert sum(resent.values()) == n_problems * n - len(stored), (resent, len(stored))
    assert all(v == 1 for v in resent.values())
    assert _outputs(run_dir) == runs["local"][0]


def _cache_keys(db) -> set[str]:
    """The request cache's keys (none before the run has created it)."""
    import sqlite3

    if not db.exists():
        return set()
    con = sqlite3.connect(db)
    try:
        return {k for (k,) in con.execute("SELECT key FROM responses")}
    except sqlite3.OperationalError:  # created, its table not yet
        return set()
    finally:
        con.close()


def test_a_concurrency_budget_is_split_across_actors_not_multiplied(make_config):
    from datagen.ray_executor import share_budgets

    cfg = make_config(
        "+pipeline=math", "teacher=openai", "teacher.model=m", "teacher.concurrency=5"
    )
    sections = {"teacher": cfg.teacher, "generation": cfg.generation, "run.seed": 0}
    shares = share_budgets(sections, 2)
    assert [s["teacher"].concurrency for s in shares] == [3, 2]
    assert all(s["generation"] is cfg.generation for s in shares)
    one = make_config(
        "+pipeline=math", "teacher=openai", "teacher.model=m", "teacher.concurrency=1"
    )
    assert len(share_budgets({"teacher": one.teacher}, 4)) == 1  # never an actor with no slot
    assert share_budgets({"generation": cfg.generation}, 3) == [{"generation": cfg.generation}] * 3
