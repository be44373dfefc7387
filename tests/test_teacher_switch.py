"""Switching teachers in one run directory: nothing is silently reused, the summary says what ran.

Real parts only: the embedded local teacher (llama.cpp in process), then the
OpenAI-compatible teacher against llama.cpp's own server on 127.0.0.1 serving the
same GGUF under the same model name (the case where a cache key without the
backend handed the local teacher's answers to the API teacher), behind the
counting proxy of ``helpers/fault_proxy.py``. An LLM judge on the same server
grades the answers; a 135M judge often writes no usable score, which is what
gives the summary unverifiable samples to report.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers, under any pytest import mode
from helpers.fault_proxy import FaultProxy
from helpers.llama_server import LlamaServer

from datagen.__main__ import run
from datagen.summary import format_summary
from datagen.views import open_part

from .conftest import LLAMA_KEY_ENV, compose

MODEL = "SmolLM2-135M-Instruct"  # the local teacher's model name, served under the same name


@pytest.fixture(scope="module")
def server(llama_server):
    """The suite's one server (conftest.py), which takes the key in ``LLAMA_KEY_ENV``."""
    return llama_server


@pytest.fixture(scope="module")
def proxy(server):
    p = FaultProxy(server.port).start()
    yield p
    p.stop()


def overrides(server: LlamaServer, *extra: str) -> list[str]:
    return [
        "+pipeline=general",
        "verifier=judge",
        f"verifier.model={MODEL}",
        f"verifier.base_url={server.base_url}",  # the judge bypasses the counting proxy
        f"verifier.api_key_env={LLAMA_KEY_ENV}",
        "verifier.max_tokens=24",
        "run.limit=2",
        "generation.n=2",
        "generation.max_tokens=40",
        'generation.stop=["\n"]',  # one line per answer, rarely cut off
        "run.progress=false",
        *extra,
    ]


def api_teacher(proxy: FaultProxy) -> list[str]:
    return [
        "teacher=openai",
        f"teacher.model={MODEL}",
        f"teacher.base_url={proxy.base_url}",
        f"teacher.api_key_env={LLAMA_KEY_ENV}",
    ]


def unverifiable_of(run_dir: Path) -> list[dict]:
    final = open_part(str(next((run_dir / "stages").glob("*_emit")) / "data"))
    return [row for row in final if row["passed"] is None]


def test_switching_to_the_api_teacher_sends_requests_and_the_summary_says_so(
    server, proxy, tmp_path, caplog
):
    run_dir = tmp_path / "run"
    # The local teacher on llama.cpp in process (the docstring's case; the default
    # transformers engine's own runs are test_base_install's and test_e2e_general's).
    local = run(compose(*overrides(server, "teacher.engine=llama_cpp")), run_dir)
    assert (local["requests_sent"], local["cache_hits"]) == (4, 0)  # 2 prompts x 2 samples

    proxy.reset()
    with caplog.at_level("WARNING", logger="datagen.rerun"):
        api = run(compose(*overrides(server, *api_teacher(proxy))), run_dir)
    # Same model name, prompts, sampling and seeds: only the backend differs, and that
    # is enough for the API teacher to be asked for every sample.
    assert len(proxy.received()) == api["requests_sent"] == 4 and api["cache_hits"] == 0
    warning = next(r.getMessage() for r in caplog.records if r.name == "datagen.rerun")
    assert "teacher.name" in warning and "teacher.base_url" in warning
    previous = yaml.safe_load((run_dir / "config.previous.yaml").read_text())
    assert previous["teacher"]["name"] == "local"

    proxy.reset()  # two more samples per prompt: the first two come from the cache
    more = run(compose(*overrides(server, *api_teacher(proxy), "generation.n=3")), run_dir)
    assert len(proxy.received()) == more["requests_sent"] == 2 and more["cache_hits"] == 4

    for summary in (local, api, more):
        undecided = unverifiable_of(run_dir) if summary is more else None
        if undecided is not None:
            assert summary["unverifiable"] == len(undecided)
        top = summary["unverifiable_top_reason"]
        assert (top is None) == (summary["unverifiable"] == 0)
        if top is not None:
            assert top["reason"].startswith("judge: ")
            assert 1 <= top["count"] <= summary["unverifiable"]
        text = format_summary(summary)
        assert f"requests sent to teacher         {summary['requests_sent']}" in text
        assert f"answered from request cache      {summary['cache_hits']}" in text
        assert f"unverifiable samples             {summary['unverifiable']}" in text
        assert f"failed requests                  {summary['generation_failed']}" in text
