"""One writer per run directory: a second process is refused naming the holder; a lock
left by a killed run is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers, under any pytest import mode
from helpers.stub_openai import StubOpenAI

from datagen.lock import RunDirLocked, RunLock

from .conftest import ROOT


def test_a_second_holder_is_refused_and_the_lock_is_free_after_release(tmp_path):
    with RunLock(tmp_path), pytest.raises(RunDirLocked, match=f"pid {os.getpid()}"):
        RunLock(tmp_path).acquire()
    with RunLock(tmp_path) as again:
        assert again.path.read_text() == str(os.getpid())


def datagen(run_dir: Path, url: str, source: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "datagen",
        "+pipeline=math",
        "pipeline.stages=[load,generate,verify,filter,emit]",
        f"source.path={source}",
        "teacher=openai",
        "teacher.model=m",
        f"teacher.base_url={url}",
        "teacher.api_key_env=null",
        "run.progress=false",
        f"hydra.run.dir={run_dir}",
    ]


@pytest.mark.slow  # a full python -m datagen run in a subprocess
def test_a_second_process_is_refused_and_a_killed_runs_lock_is_taken_over(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    source = tmp_path / "p.jsonl"
    source.write_text(json.dumps({"id": "1", "problem": "What is 1+1?", "answer": "2"}) + "\n")
    run_dir = tmp_path / "run"
    with StubOpenAI("hang") as hung:
        first = subprocess.Popen(
            datagen(run_dir, hung.base_url, source),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while hung.requests == 0 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert hung.requests > 0
        second = subprocess.run(
            datagen(run_dir, hung.base_url, source), env=env, capture_output=True, text=True
        )
        said = second.stdout + second.stderr
        assert second.returncode == 2, said[-2000:]
        assert f"in use by another datagen run (pid {first.pid})" in said
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    with StubOpenAI() as stub:
        third = subprocess.run(
            datagen(run_dir, stub.base_url, source), env=env, capture_output=True, text=True
        )
    said = third.stdout + third.stderr
    assert third.returncode == 0, said[-2000:]
    assert f"took over the run directory lock left by pid {first.pid}" in said
