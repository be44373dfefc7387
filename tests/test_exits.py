"""Exits that tell the truth, against real local servers (see helpers/stub_openai.py).

A server that never answers, one that is down, a host that does not resolve,
an error body full of escape codes, a run where every generation failed,
Ctrl-C and a full disk: each ends with one clear line and a status that says
what happened.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers, under any pytest import mode
from helpers.stub_openai import StubOpenAI

from datagen.__main__ import run
from datagen.config import SamplingConfig
from datagen.outcome import RunFailed
from datagen.records import Problem, content_hash
from datagen.teachers.api import OpenAITeacher, OpenAITeacherConfig
from datagen.teachers.base import TeacherFatalError

from .conftest import ROOT, compose

HOSTILE = "boom\x1b[2J\x1b]0;owned\x07\x1b[31m red"


def problems(n: int = 2) -> list[Problem]:
    return [
        Problem(
            id=content_hash("t", i),
            source="t",
            domain="math",
            messages=[{"role": "user", "content": f"What is {i}+1?"}],
            reference=str(i + 1),
        )
        for i in range(n)
    ]


def teacher(url: str, **kw) -> OpenAITeacher:
    return OpenAITeacher(OpenAITeacherConfig(model="m", base_url=url, api_key_env=None, **kw))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_never_answers_stops_the_stage_at_the_stall_limit():
    with StubOpenAI("hang") as stub:
        t = teacher(stub.base_url, timeout=1.0, stall_timeout=3.0, backoff_initial=0.1)
        started = time.monotonic()
        with pytest.raises(TeacherFatalError, match="no response for") as info:
            t.generate(problems(), SamplingConfig(n=1), 0)
        elapsed = time.monotonic() - started
        t.close()
    assert elapsed < 60  # the stall limit (3 s) plus shutdown, not 9 tries x 600 s
    assert "teacher.stall_timeout" in str(info.value) and "rerun to resume" in str(info.value)
    assert stub.requests >= 2


def test_the_default_limits_are_finite():
    cfg = OpenAITeacherConfig(model="m")
    assert cfg.stall_seconds == cfg.timeout + 60  # stops a hung server after 11 minutes
    assert 0 < cfg.unreachable_after <= 60


@pytest.mark.slow
def test_a_server_that_is_down_stops_within_a_minute_with_the_defaults():
    t = teacher(f"http://127.0.0.1:{closed_port()}/v1")  # every other option: the default
    started = time.monotonic()
    with pytest.raises(TeacherFatalError, match="no connection could be opened"):
        t.generate(problems(1), SamplingConfig(n=1), 0)
    t.close()
    assert time.monotonic() - started < 60


def test_a_server_that_is_down_stops_at_its_limit():
    t = teacher(f"http://127.0.0.1:{closed_port()}/v1", unreachable_after=1.0, backoff_initial=0.1)
    with pytest.raises(TeacherFatalError, match="is the server running"):
        t.generate(problems(1), SamplingConfig(n=1), 0)
    t.close()


def test_an_unresolvable_host_stops_at_once():
    t = teacher("http://no-such-host.invalid/v1")
    started = time.monotonic()
    with pytest.raises(TeacherFatalError, match="does not resolve"):
        t.generate(problems(1), SamplingConfig(n=1), 0)
    t.close()
    assert t.http_requests == 1 and time.monotonic() - started < 30  # not retried


def test_an_escape_code_error_body_is_shown_escaped_and_retries_are_summarised(caplog):
    caplog.set_level(logging.INFO, logger="datagen")
    with StubOpenAI("error", error_message=HOSTILE) as stub:
        t = teacher(stub.base_url, max_retries=2, backoff_initial=0.01, backoff_max=0.02)
        samples = t.generate(problems(1), SamplingConfig(n=1), 0)
        t.close()
    assert samples[0].error is not None and "\x1b" not in samples[0].error
    assert "\\x1b[2J" in samples[0].error
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    retry_lines = [m for m in infos if "retr" in m and "since the last report" in m]
    assert retry_lines and "\\x1b]0;owned\\x07" in retry_lines[0]
    assert not any("\x1b" in r.getMessage() for r in caplog.records)


def source(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "p.jsonl"
    rows = [{"id": str(i), "problem": f"What is {i}+1?", "answer": str(i + 1)} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


SHORT = (
    "+pipeline=math",
    "pipeline.stages=[load,generate,verify,filter,emit]",
    "run.progress=false",
)


def api_overrides(url: str) -> tuple[str, ...]:
    return (
        "teacher=openai",
        "teacher.model=m",
        f"teacher.base_url={url}",
        "teacher.api_key_env=null",
    )


def test_a_run_where_every_generation_failed_fails(tmp_path):
    with StubOpenAI("bad_request") as stub:
        cfg = compose(*SHORT, f"source.path={source(tmp_path)}", *api_overrides(stub.base_url))
        with pytest.raises(RunFailed, match="all 12 generations failed") as info:
            run(cfg, tmp_path / "run")
    assert info.value.summary["generation_failed"] == 12
    assert (tmp_path / "run" / "summary.json").exists()  # the record is still written


def test_a_source_whose_rows_are_all_rejected_fails(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1, "problem": "x"\nnot json\n')
    cfg = compose(*SHORT, f"source.path={path}")
    with pytest.raises(RunFailed, match="all 2 source rows were rejected"):
        run(cfg, tmp_path / "run")


def datagen_cmd(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "datagen", *overrides, f"hydra.run.dir={run_dir}"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def popen_interruptible(cmd: list[str], **kw) -> subprocess.Popen:
    """``subprocess.Popen`` whose child turns SIGINT into KeyboardInterrupt, as a terminal's is.

    A process started in the background by a shell without job control (``pytest &`` in a
    script, some CI runners) inherits SIGINT *ignored*, and so does every child it starts;
    Python keeps an inherited SIG_IGN, so the datagen under test would never see the
    test's SIGINT and the test would wait out its timeout (the hang of 1 in 5 full-suite
    runs: the backgrounded ones). A caught signal is reset to the default by exec, so
    installing Python's handler around the fork gives the child the default disposition.
    """
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(cmd, **kw)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_a_child_started_with_sigint_ignored_still_gets_keyboard_interrupt():
    """The regression check for the hang above: deterministic, whatever started pytest."""
    probe = [
        sys.executable,
        "-c",
        "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)",
    ]
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under `pytest &`
    try:
        plain = subprocess.run(probe, capture_output=True, text=True, timeout=60)
        child = popen_interruptible(probe, stdout=subprocess.PIPE, text=True)
        out, _ = child.communicate(timeout=60)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # the parent's is put back
    finally:
        signal.signal(signal.SIGINT, before)
    assert plain.stdout.strip() == "False"  # a plain child inherits SIG_IGN: the trigger
    assert out.strip() == "True"


def test_ctrl_c_prints_how_to_resume_and_exits_130(tmp_path):
    run_dir = tmp_path / "run"
    with StubOpenAI("hang") as stub:
        cmd = datagen_cmd(
            run_dir, *SHORT, f"source.path={source(tmp_path)}", *api_overrides(stub.base_url)
        )
        proc = popen_interruptible(
            cmd, env=env(), stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 120
        while stub.requests == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert stub.requests > 0, proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "rerun the same command to resume" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


@pytest.mark.slow  # a full python -m datagen run in a subprocess
def test_a_full_disk_names_the_place_and_says_a_rerun_resumes(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # The kernel's own ENOSPC: /dev/full refuses every write with "No space left on device".
    (run_dir / "summary.json").symlink_to("/dev/full")
    with StubOpenAI() as stub:
        cmd = datagen_cmd(
            run_dir, *SHORT, f"source.path={source(tmp_path)}", *api_overrides(stub.base_url)
        )
        proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
        said = proc.stdout + proc.stderr  # Hydra's console log goes to stdout
        assert proc.returncode == 4, said[-2000:]
        assert "disk full while writing" in said and "MiB free" in said
        assert "the run resumes" in said and "Traceback" not in said
        (run_dir / "summary.json").unlink()
        sent = stub.requests
        again = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert stub.requests == sent  # every stage resumed: nothing asked twice
    assert json.loads((run_dir / "summary.json").read_text())["samples"] == 12
