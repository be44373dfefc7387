"""Generation as a stream: no batch barrier, deterministic output, kill -9 safe.

The server is ``tests/helpers/latency_server.py``: a real HTTP server on
127.0.0.1 speaking the OpenAI chat API, standing in for a model server (canned
text, heavy-tailed delays so requests finish out of order). The client side is
the real one: the openai SDK, the request cache, the runner and its shards.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datagen.records import Problem, Sample
from datagen.runner import Runner
from datagen.stages import STAGES
from datagen.teachers.api import OpenAITeacher
from datagen.views import open_part
from tests.helpers.latency_server import Latency, LatencyServer

ROOT = Path(__file__).resolve().parents[1]


def make_source(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "problems.jsonl"
    rows = [
        {"id": f"q{i:03d}", "problem": f"What is {i} + 7?", "answer": str(i + 7)} for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def overrides(source: Path, base_url: str, *extra: str) -> list[str]:
    return [
        "+pipeline=math",
        "pipeline.stages=[load,generate]",
        f"source.path={source}",
        "teacher=openai",
        "teacher.model=stub",
        f"teacher.base_url={base_url}",
        "teacher.api_key_env=null",
        "teacher.concurrency=8",
        # The two runs talk to two servers (two ports): one namespace makes their cache
        # keys, and so the sample ids, comparable.
        "teacher.cache_namespace=stream-test",
        "generation.n=2",
        "run.progress=false",
        *extra,
    ]


def generated(run_dir: Path) -> list[dict]:
    return open_part(str(run_dir / "stages" / "01_generate" / "data")).to_list()


def test_stream_output_is_in_input_order_and_equals_batch_generation(tmp_path, make_config):
    # Delays spread over 100x, so groups finish far out of input order.
    latency = Latency(median=0.01, sigma=1.5, tail_share=0.1, tail_factor=20)
    source = make_source(tmp_path, 24)
    with LatencyServer(latency) as server:
        cfg = make_config(*overrides(source, server.base_url, "run.generate_batch_size=3"))
        stages = [STAGES["load"], STAGES["generate"]]
        results = Runner(cfg, tmp_path / "run", stages).run()
        rows = generated(tmp_path / "run")
        problems = [
            Problem.from_row(r)
            for r in open_part(str(tmp_path / "run/stages/00_load/data")).to_list()
        ]
        teacher = OpenAITeacher(cfg.teacher, None)  # no cache: sends everything again
        expected = teacher.generate(problems, cfg.generation, 0)
        teacher.close()
    assert results[-1].rows_out == 48 and results[-1].stats["requests_sent"] == 48
    assert [(r["problem_id"], r["sample_index"]) for r in rows] == [
        (p.id, k) for p in problems for k in range(2)
    ]
    assert [Sample.from_row(r) for r in rows] == expected
    counts = server.counts.as_dict()  # each request once per client (the second has no cache)
    assert counts["distinct"] == 48 and counts["requests"] == 96


def cache_keys(db: Path) -> set[str]:
    if not db.exists():
        return set()
    con = sqlite3.connect(db)
    try:
        return {k for (k,) in con.execute("SELECT key FROM responses")}
    except sqlite3.OperationalError:
        return set()
    finally:
        con.close()


@pytest.mark.slow
def test_kill_9_mid_stream_resends_only_what_was_in_flight(tmp_path, make_config):
    n_problems, n = 40, 2
    total = n_problems * n
    latency = Latency(median=0.1, sigma=1.0, tail_share=0.05, tail_factor=20)
    source = make_source(tmp_path, n_problems)

    # The reference: one uninterrupted run against its own server.
    with LatencyServer(latency) as ref_server:
        cfg = make_config(*overrides(source, ref_server.base_url, "run.generate_batch_size=4"))
        Runner(cfg, tmp_path / "ref", [STAGES["load"], STAGES["generate"]]).run()
    reference = generated(tmp_path / "ref")

    run_dir = tmp_path / "killed"
    db = run_dir / "cache" / "requests.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with LatencyServer(latency) as server:
        args = overrides(source, server.base_url, "run.generate_batch_size=4")
        cmd = [sys.executable, "-m", "datagen", *args, f"hydra.run.dir={run_dir}"]
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        partial = run_dir / "stages" / "01_generate"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            shards = list(partial.glob(".partial-*/group-*.parquet"))
            if len(shards) >= 2 and len(cache_keys(db)) >= total // 3:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stored = cache_keys(db)
        shards = list(partial.glob(".partial-*/group-*.parquet"))
        in_shards = {r for s in shards for r in pq.read_table(s)["request_key"].to_pylist()}
        assert shards and 0 < len(stored) < total, "the kill landed outside the stream"
        assert in_shards <= stored  # a shard only holds what the cache already has

        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        counts = server.counts.as_dict()

    # Map the server's request ids (prompt|seed) back to cache keys.
    loaded = open_part(str(run_dir / "stages" / "00_load" / "data")).to_list()
    problems = [Problem.from_row(r) for r in loaded]
    teacher = OpenAITeacher(cfg.teacher, None)
    requests = teacher.build_requests(problems, cfg.generation, 0)
    teacher.close()
    key_of = {f"{r.messages[-1]['content']}|{r.seed}": r.key for r in requests}
    resent = {key_of[rid] for rid in counts["sent_twice"]}
    assert counts["distinct"] == total
    assert not resent & stored, "a stored response was requested again"
    assert len(resent) <= 8  # at most what was in flight (teacher.concurrency)
    assert counts["requests"] == total + len(resent)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stages"]["generate"]["stats"]["requests_sent"] == total - len(stored)
    assert generated(run_dir) == reference


class OneHangs(Latency):
    """Every request answers at once except the one for ``prompt``, which never does."""

    def __init__(self, prompt: str) -> None:
        super().__init__(median=0.0)
        object.__setattr__(self, "prompt", prompt)

    def of(self, key: str) -> float:
        return 3600.0 if key.startswith(self.prompt + "|") else 0.0


def test_a_hung_request_times_out_is_retried_and_ends_as_a_failed_sample_with_its_reason():
    from datagen.config import SamplingConfig
    from datagen.teachers.api import OpenAITeacherConfig

    problems = [
        Problem(id=f"q{i}", source="t", domain="math", messages=[{"role": "user", "content": p}])
        for i, p in enumerate(["What is 1 + 1?", "What is 2 + 2?", "What is 3 + 3?"])
    ]
    with LatencyServer(OneHangs("What is 2 + 2?")) as server:
        cfg = OpenAITeacherConfig(
            model="m",
            base_url=server.base_url,
            api_key_env=None,
            timeout=0.5,  # per request; the stream's stall guard stays at its default (60.5 s)
            max_retries=1,
            backoff_initial=0.01,
            backoff_max=0.01,
        )
        teacher = OpenAITeacher(cfg, None)
        started = time.monotonic()
        groups = list(teacher.generate_stream(problems, SamplingConfig(n=1), 0))
        elapsed = time.monotonic() - started
        teacher.close()
        counts = server.counts.as_dict()
    samples = {g[0].problem_id: g[0] for g in groups}
    assert sorted(samples) == ["q0", "q1", "q2"]  # the hung one is not lost
    assert samples["q0"].error is None and samples["q2"].error is None
    assert samples["q1"].error == "gave up after 2 attempts: timeout"
    assert samples["q1"].keep is False and "timeout" in samples["q1"].reject_reason
    assert counts["sent_twice"] and counts["sent_twice"][0].startswith("What is 2 + 2?")
    assert counts["requests"] == 4  # the hung request twice (its retry), the others once
    assert elapsed < 30  # two timeouts, not the stall guard's minute


def test_answers_put_just_after_a_wait_timed_out_are_still_taken(monkeypatch):
    """The consumer waits for answers in 1 s slices; when a slice ran out just as the loop
    made its last put and finished, the answers were in the queue but the consumer saw a
    finished loop and raised "ended early" (seen under load). The queue here forces
    that order: its first wait returns empty only once the loop has finished."""
    import asyncio
    import queue as stdlib_queue
    import types

    from datagen.config import SamplingConfig
    from datagen.teachers import api
    from datagen.teachers.api import OpenAITeacherConfig

    futures = []
    submit = asyncio.run_coroutine_threadsafe

    def recorded(coro, loop):
        futures.append(submit(coro, loop))
        return futures[-1]

    class LateQueue(stdlib_queue.SimpleQueue):
        late = True

        def get(self, block=True, timeout=None):
            if timeout is not None and LateQueue.late:
                LateQueue.late = False
                futures[-1].result(timeout=60)  # the loop has put everything and returned
                assert not self.empty()
                raise stdlib_queue.Empty
            return super().get(block, timeout)

    monkeypatch.setattr(asyncio, "run_coroutine_threadsafe", recorded)
    monkeypatch.setattr(
        api, "queue", types.SimpleNamespace(SimpleQueue=LateQueue, Empty=stdlib_queue.Empty)
    )
    problems = [
        Problem(id="q0", source="t", domain="math", messages=[{"role": "user", "content": "1+1?"}])
    ]
    with LatencyServer(Latency(median=0.0)) as server:
        cfg = OpenAITeacherConfig(model="m", base_url=server.base_url, api_key_env=None)
        teacher = OpenAITeacher(cfg, None)
        groups = list(teacher.generate_stream(problems, SamplingConfig(n=2), 0))
        teacher.close()
    assert not LateQueue.late  # the forced order happened
    assert [(s.problem_id, s.sample_index, s.error) for s in groups[0]] == [
        ("q0", 0, None),
        ("q0", 1, None),
    ]


def test_the_summary_says_when_a_tiny_concurrency_set_the_pace(tmp_path, make_config):
    from datagen.summary import build_summary, format_summary

    source = make_source(tmp_path, 20)
    with LatencyServer(Latency(median=0.02, sigma=0.5, tail_share=0.0)) as server:
        cfg = make_config(*overrides(source, server.base_url, "teacher.concurrency=2"))
        run_dir = tmp_path / "run"
        results = Runner(cfg, run_dir, [STAGES["load"], STAGES["generate"]]).run()
    stats = results[-1].stats
    assert stats["window_answered"] == 40 and stats["retries"] == 0
    assert stats["window_queued_s"] / stats["window_busy_s"] > 0.9  # measured, not assumed
    summary = build_summary(results, run_dir, 1.0, cfg)
    [note] = summary["notes"]
    assert note.startswith("generate: teacher.concurrency=2 (default 16) set the pace")
    assert "raise teacher.concurrency" in note
    assert f"  note: {note}" in format_summary(summary).splitlines()


def test_no_note_when_the_window_is_wider_than_the_work_and_one_for_small_batches(make_config):
    from datagen.stages.generate import stream_note

    cfg = make_config(
        "+pipeline=math", "teacher=openai", "teacher.model=m", "teacher.concurrency=4"
    )
    window = {"window_busy_s": 9.0, "window_queued_s": 8.9, "window_in_flight_s": 36.0}
    window["window_latency_s"] = 90.0
    few = {**window, "window_busy_s": 2.0, "window_queued_s": 0.5, "window_answered": 8}
    assert stream_note({**few, "retries": 0}, cfg) is None  # the work, not the window
    busy = {**window, "window_answered": 900}
    assert stream_note({**busy, "retries": 3}, cfg) is None  # the server pushed back
    assert "4.0 in flight on average" in stream_note({**busy, "retries": 0}, cfg)
    wide = make_config(
        "+pipeline=math", "teacher=openai", "teacher.model=m", "teacher.concurrency=64"
    )
    assert stream_note({**busy, "retries": 0}, wide) is None  # not below the default
    cfg = wide
    batches = {"batches": 10, "batch_requests": 40 * 4 * 10}  # 40 problems x n=4 per batch
    assert stream_note(batches, cfg) is None
    small = {"batches": 10, "batch_requests": 4 * 4 * 10}  # 16 requests per batch, 64 slots
    note = stream_note(small, cfg)
    assert note.startswith("generate: batches averaged 16 requests for teacher.concurrency=64")
    assert "run.generate_batch_size to at least 16" in note  # 64 slots / n=4


def test_to_row_matches_asdict_without_sharing_mutable_values():
    import dataclasses

    from datagen.records import Verdict

    sample = Sample(
        id="s",
        problem_id="p",
        domain="math",
        messages=[{"role": "user", "content": "2+2?"}],
        reference="4",
        teacher="t",
        model="m",
        sample_index=0,
        verdicts=[Verdict("math", "1", True, 1.0, {"extracted": "4"})],
    )
    row = sample.to_row()
    expected = dataclasses.asdict(sample)
    expected["verdicts"] = [v.to_row() for v in sample.verdicts]
    assert row == expected  # no ClassVar (FEATURES, JSON_FIELDS) among the columns
    row["messages"][0]["content"] = "changed"
    assert sample.messages[0]["content"] == "2+2?"
