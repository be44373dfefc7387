"""The API teacher against a real OpenAI-compatible server (llama.cpp on 127.0.0.1).

The suite's one server (conftest.py's ``llama_server``), behind a fault-injecting proxy
of our own (``helpers/fault_proxy.py``) that counts every request the client sends.
Generations are tiny (8-12 tokens) so the module runs in about a minute on
two shared cores.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers, under any pytest import mode
from helpers.fault_proxy import FaultProxy

from datagen.config import SamplingConfig
from datagen.records import Problem, content_hash
from datagen.teachers.api import OpenAITeacher, OpenAITeacherConfig
from datagen.teachers.base import PriceConfig, TeacherFatalError
from datagen.teachers.cache import RequestCache

from .conftest import LLAMA_KEY as KEY
from .conftest import LLAMA_KEY_ENV as KEY_ENV

HELPERS = Path(__file__).parent / "helpers"


@pytest.fixture
def proxy(llama_server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    p = FaultProxy(llama_server.port).start()
    yield p
    p.stop()


def problems(*prompts: str) -> list[Problem]:
    return [
        Problem(
            id=content_hash("t", p),
            source="t",
            domain="math",
            messages=[{"role": "user", "content": p}],
            reference="1",
        )
        for p in prompts
    ]


def teacher_for(proxy: FaultProxy, cache: RequestCache | None, **kw) -> OpenAITeacher:
    opts = {
        "model": "smollm2",
        "base_url": proxy.base_url,
        "api_key_env": KEY_ENV,
        "concurrency": 2,
        "timeout": 60.0,
        "max_retries": 3,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        **kw,
    }
    return OpenAITeacher(OpenAITeacherConfig(**opts), cache)


SAMPLING = SamplingConfig(n=2, temperature=0.8, max_tokens=12)


def test_rerun_sends_zero_requests_and_reports_cost(proxy, tmp_path):
    price = PriceConfig(prompt_per_million=1.0, completion_per_million=2.0)
    batch = problems("What is 2+3?", "Name a prime number.", "What is 10/2?")
    teacher = teacher_for(proxy, RequestCache(tmp_path / "c.sqlite"), price=price)
    first = teacher.generate(batch, SAMPLING, 0)
    assert len(proxy.received()) == 6 and len(first) == 6
    assert teacher.stats()["requests_sent"] == 6
    for s in first:
        assert s.error is None and s.keep and s.content
        assert s.finish_reason in ("stop", "length")
        assert s.truncated == (s.finish_reason == "length")
        assert s.prompt_tokens > 0 and s.completion_tokens > 0
        assert s.cost == pytest.approx((s.prompt_tokens * 1.0 + s.completion_tokens * 2.0) / 1e6)
    assert teacher.cost_spent == pytest.approx(sum(s.cost for s in first))
    teacher.close()

    proxy.reset()
    again = teacher_for(proxy, RequestCache(tmp_path / "c.sqlite"), price=price)
    second = again.generate(batch, SAMPLING, 0)
    assert proxy.received() == []  # nothing sent: every response came from the cache
    assert [s.to_row() for s in second] == [s.to_row() for s in first]
    assert again.cost_spent == 0 and again.cache_hits == 6
    again.close()


def test_every_fault_ends_in_samples_or_a_recorded_reason(proxy, tmp_path):
    proxy.reset(
        {
            "[429]": ["429", "429"],
            "[5xx]": ["500", "503"],
            "[stall]": ["stall"],
            "[cut]": ["cut"],
            "[drop]": ["drop"],
            "[malformed]": ["malformed"],
            "[bad]": ["400"],
            "[down]": ["500"] * 10,
        }
    )
    markers = [
        "[429]",
        "[5xx]",
        "[stall]",
        "[cut]",
        "[drop]",
        "[malformed]",
        "[bad]",
        "[down]",
        "[ok]",
    ]
    batch = problems(*(f"{m} Say hi." for m in markers))
    teacher = teacher_for(
        proxy, RequestCache(tmp_path / "c.sqlite"), concurrency=3, timeout=10.0, max_retries=2
    )
    samples = teacher.generate(batch, SamplingConfig(n=1, max_tokens=8), 0)  # never raises
    by_marker = dict(zip(markers, samples, strict=True))
    for marker, s in by_marker.items():
        if marker in ("[bad]", "[down]"):
            assert s.error and not s.keep and s.reject_reason.startswith("generation failed")
        else:
            assert s.error is None and s.keep and s.content, marker
    assert "HTTP 400" in by_marker["[bad]"].error and len(proxy.received("[bad]")) == 1
    assert by_marker["[down]"].error.startswith("gave up after 3 attempts: HTTP 500")
    assert len(proxy.received("[down]")) == 3
    first, retry = proxy.received("[429]")[:2]
    assert retry.at - first.at >= 0.95  # waited the Retry-After: 1, not the 0.05s backoff
    assert len(proxy.received("[429]")) == 3 and len(proxy.received("[cut]")) == 2
    cache = RequestCache(tmp_path / "c.sqlite")
    assert len(cache) == 7  # the failures are not cached: a later run retries them
    cache.close()
    teacher.close()


def test_bad_key_stops_the_stage_at_once_without_leaking_it(proxy, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "wrong-key-9f8e")
    teacher = teacher_for(proxy, None, concurrency=2)
    started = time.monotonic()
    with pytest.raises(TeacherFatalError, match="api_key_env") as info:
        teacher.generate(problems("a", "b", "c", "d"), SAMPLING, 0)
    assert time.monotonic() - started < 10
    assert len(proxy.received()) <= 2  # the requests already in flight, none retried
    assert "wrong-key-9f8e" not in str(info.value)
    teacher.close()


def test_unknown_model_is_fatal_and_says_what_to_check(proxy):
    proxy.reset({"": ["404"] * 5})
    teacher = teacher_for(proxy, None, concurrency=1)
    with pytest.raises(TeacherFatalError, match=r"teacher\.model"):
        teacher.generate(problems("a"), SAMPLING, 0)
    assert len(proxy.received()) == 1
    teacher.close()


def test_an_endpoint_that_stays_down_stops_the_stage(proxy):
    proxy.reset({"": ["503"] * 100})
    teacher = teacher_for(proxy, None, concurrency=1, max_retries=1, max_consecutive_failures=3)
    failed = teacher.generate(problems("a", "b"), SamplingConfig(n=1, max_tokens=8), 0)
    assert all(s.error.startswith("gave up after 2 attempts: HTTP 503") for s in failed)
    with pytest.raises(TeacherFatalError, match="3 requests in a row failed"):
        teacher.generate(problems("c", "d"), SamplingConfig(n=1, max_tokens=8), 0)  # counts on
    assert len(proxy.received()) == 6  # 3 requests x 2 attempts; "d" was never sent
    teacher.close()


def test_reasoning_field_is_kept_apart(proxy):
    proxy.reset({"[think]": ["reasoning"]})
    teacher = teacher_for(proxy, None)
    [s] = teacher.generate(problems("[think] What is 6*7?"), SamplingConfig(n=1, max_tokens=8), 0)
    assert s.content == "The answer is \\boxed{42}." and s.reasoning
    assert s.completion_tokens > 0
    teacher.close()


def test_n_in_one_request_and_fallback_when_the_server_ignores_it(proxy):
    sampling = SamplingConfig(n=3, max_tokens=8)
    price = PriceConfig(prompt_per_million=1.0)
    proxy.emulate_n = True
    teacher = teacher_for(proxy, None, server_supports_n=True, price=price)
    samples = teacher.generate(problems("Tell me a fruit."), sampling, 0)
    [req] = proxy.received()
    assert req.body["n"] == 3 and len(samples) == 3 and all(s.error is None for s in samples)
    assert len({s.content for s in samples}) > 1  # three different samples
    assert sum(s.cost for s in samples) == pytest.approx(samples[0].prompt_tokens / 1e6)

    proxy.emulate_n = False  # llama.cpp's own answer: one choice whatever n says
    proxy.reset()
    samples = teacher.generate(problems("Tell me a colour."), sampling, 0)
    assert [r.body.get("n") for r in proxy.received()] == [3, None, None]
    assert all(s.error is None for s in samples) and len(samples) == 3
    teacher.close()


def test_kill_9_then_resume_sends_nothing_twice_and_gives_the_same_samples(proxy, tmp_path):
    batch = problems(*(f"Write the number {i} in words." for i in range(6)))
    sampling = SamplingConfig(n=2, max_tokens=10)
    spec = {
        "base_url": proxy.base_url,
        "api_key_env": KEY_ENV,
        "cache": str(tmp_path / "c.sqlite"),
        "problems": [p.to_row() for p in batch],
        "sampling": asdict(sampling),
        "seed": 3,
        "concurrency": 2,
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    cmd = [
        sys.executable,
        str(HELPERS / "gen_worker.py"),
        str(tmp_path / "spec.json"),
        str(tmp_path / "out.json"),
    ]
    env = {**os.environ, "PYTHONPATH": str(HELPERS.parents[1])}
    worker = subprocess.Popen(cmd, env=env)
    stored_at_kill = _wait_for_entries(tmp_path / "c.sqlite", 4, worker)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)
    stored_at_kill = _stored_seeds(proxy, tmp_path / "c.sqlite", batch, sampling, 3)
    assert 4 <= len(stored_at_kill) < 12 and not (tmp_path / "out.json").exists()
    sent_before = len(proxy.received())

    proxy.reset()
    subprocess.run(cmd, env=env, check=True, timeout=300)
    resumed = json.loads((tmp_path / "out.json").read_text())
    sent_again = {(r.prompt, r.body["seed"]) for r in proxy.received()}
    assert not sent_again & stored_at_kill  # no stored response was asked for again
    assert len(proxy.received()) == 12 - len(stored_at_kill)
    assert sent_before - len(stored_at_kill) <= 2  # at most the requests in flight at the kill

    reference = teacher_for(proxy, None).generate(batch, sampling, 3)  # one uninterrupted run
    fields = ("request_key", "content", "finish_reason", "completion_tokens", "sample_index")
    assert [{k: r[k] for k in fields} for r in resumed] == [
        {k: getattr(s, k) for k in fields} for s in reference
    ]


def _wait_for_entries(path: Path, n: int, worker: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            pytest.fail("the worker finished before it could be killed")
        if path.exists():
            try:
                with sqlite3.connect(path, timeout=5) as db:
                    count = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
                if count >= n:
                    return count
            except sqlite3.OperationalError:  # table not created yet
                pass
        time.sleep(0.02)
    pytest.fail("the worker stored nothing in time")


def _stored_seeds(proxy, path: Path, batch, sampling, seed) -> set[tuple[str, int]]:
    """(prompt, seed) of every request whose response is in the cache file."""
    with sqlite3.connect(path) as db:
        keys = {k for (k,) in db.execute("SELECT key FROM responses")}
    teacher = teacher_for(proxy, None)  # the worker's config: the same keys
    requests = teacher.build_requests(batch, sampling, seed)
    teacher.close()
    prompts = [p.prompt for p in batch for _ in range(sampling.n)]
    return {(q, r.seed) for q, r in zip(prompts, requests, strict=True) if r.key in keys}


@dataclass(frozen=True)
class PipelineConfig:
    """The config sections the load and generate stages read (stand-in for DatagenConfig)."""

    run: Any
    source: Any
    generation: Any
    teacher: Any
    filter: Any
    sources: list[Any] = field(default_factory=list)
    teachers: tuple = ()  # generate reads the teachers list (empty: the one teacher)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def source_list(self) -> list[Any]:
        return list(self.sources) or [self.source]


def test_pipeline_rerun_and_a_new_run_sharing_the_cache_send_nothing(proxy, tmp_path):
    stages_mod = pytest.importorskip("datagen.stages")  # imports the verifier registry
    from datagen.config import FilterConfig, RunConfig, SourceConfig
    from datagen.runner import Runner

    src = tmp_path / "p.jsonl"
    src.write_text(
        "\n".join(
            json.dumps({"id": i, "problem": f"What is {i}+1?", "answer": i + 1}) for i in range(3)
        )
    )

    def config(**filter_opts: Any) -> PipelineConfig:
        teacher = OpenAITeacherConfig(
            model="smollm2",
            base_url=proxy.base_url,
            api_key_env=KEY_ENV,
            cache_path=str(tmp_path / "shared.db"),
        )
        return PipelineConfig(
            run=RunConfig(generate_batch_size=8, progress=False),
            source=SourceConfig(str(src)),
            generation=SamplingConfig(n=2, max_tokens=8),
            teacher=teacher,
            filter=FilterConfig(**filter_opts),
        )

    stages = [stages_mod.STAGES["load"], stages_mod.STAGES["generate"]]
    first = Runner(config(), tmp_path / "run1", stages).run()  # type: ignore[arg-type]
    assert len(proxy.received()) == 6 and first[1].rows_out == 6
    assert first[1].stats["requests_sent"] == 6

    proxy.reset()
    again = Runner(config(), tmp_path / "run1", stages).run()  # type: ignore[arg-type]
    assert again[1].skipped and proxy.received() == []

    # A new run directory, a different later-stage config, the same cache file.
    other = Runner(config(drop_truncated=False), tmp_path / "run2", stages).run()  # type: ignore[arg-type]
    assert not other[1].skipped and other[1].rows_out == 6
    assert proxy.received() == [] and other[1].stats["requests_sent"] == 0


def test_local_teacher_keeps_working_through_the_same_interface(proxy, tmp_path):
    from datagen.teachers.local import LocalTeacher, LocalTeacherConfig

    batch = problems("What is 2+2?")
    sampling = SamplingConfig(n=2, max_tokens=8)
    local = LocalTeacher(LocalTeacherConfig(n_threads=1), RequestCache(tmp_path / "l.sqlite"))
    api = teacher_for(proxy, None)
    by_local, by_api = local.generate(batch, sampling, 0), api.generate(batch, sampling, 0)
    assert all(s.error is None and s.content and s.completion_tokens > 0 for s in by_local)
    shape = [{k: type(v) for k, v in s.to_row().items()} for s in by_local]
    assert shape == [{k: type(v) for k, v in s.to_row().items()} for s in by_api]
    assert local.generate(batch, sampling, 0)[0].to_row() == by_local[0].to_row()
    assert local.requests_sent == 2 and local.cache_hits == 2  # the rerun came from the cache
    local.close()
    api.close()
