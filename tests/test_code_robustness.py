"""Verdicts that load cannot bend and one program cannot break.

* A correct but slow program on saturated cores is never ``failed``: a wall-clock
  timeout is retried with more room and a persisting one is ``unverifiable``, unless
  a calibrated limit (``TestSpec.reference``) shows the program itself is slow.
* Return values that crash a naive grader (nested 3,000 deep, a huge int inside a
  complex, a huge int) become that program's verdict; the batch and a pipeline run
  around it finish.
* The Landlock-only fallback (bwrap forced off) reaches no host unix socket and
  leaves nothing in /tmp.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from verifiers import _confine
from verifiers.code import CodeVerifierConfig, TestSpec, verify, verify_batch
from verifiers.sandbox import SandboxConfig, get_sandbox

from .conftest import compose

# About 0.3-0.5 s of CPU on an idle core: far over the 0.3 s limit once the cores are
# shared with the busy loops below.
SLOW_SUM = "def total(n):\n    s = 0\n    for i in range(n):\n        s += i\n    return s\n"
FAST_SUM = "def total(n):\n    return n * (n - 1) // 2\n"
N = 6_000_000
SUM_SPEC = TestSpec.calls("total", [[N]], [N * (N - 1) // 2])


def _saturate(seconds: float) -> list[subprocess.Popen]:
    """Busy loops on every core, twice over, that stop by themselves after ``seconds``."""
    loop = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"
    n = 2 * len(os.sched_getaffinity(0))
    return [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(n)]


@pytest.mark.slow
def test_slow_correct_program_on_saturated_cores_is_never_failed() -> None:
    cfg = CodeVerifierConfig(SandboxConfig(timeout_s=0.3, cpu_s=20), timeout_retry_factor=3.0)
    busy = _saturate(60)
    try:
        verdicts = verify_batch([SLOW_SUM] * 4, [SUM_SPEC] * 4, cfg)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    for v in verdicts:
        assert v.passed is not False, v.details
        if v.passed is None:
            assert v.details["failure"] == "unverifiable"
            assert "busy machine" in v.details["first_failure"]["error"]
    # The first run missed its wall-clock limit, and the retry is on record.
    assert any("retried_timeout_s" in v.details for v in verdicts)


def test_calibrated_limit_fails_a_program_that_is_slow_not_starved() -> None:
    """With a reference, CPU time far beyond it is the program's fault."""
    spin = "def total(n):\n    while True:\n        pass\n"
    cfg = CodeVerifierConfig(
        SandboxConfig(timeout_s=1.0, cpu_s=20),
        timeout_retry_factor=2.0,
        timeout_retry_max_factor=2.0,
    )
    plain = verify(spin, SUM_SPEC, cfg)
    assert plain.passed is None and plain.details["failure"] == "unverifiable"
    calibrated = dataclasses.replace(SUM_SPEC, reference=FAST_SUM)
    verdict = verify(spin, calibrated, cfg)
    assert verdict.passed is False and verdict.details["failure"] == "timeout", verdict.details
    assert "calibrated limit" in verdict.details["first_failure"]["error"]
    assert verify(FAST_SUM, calibrated, cfg).passed is True


def test_a_sleeping_program_is_a_timeout_not_a_busy_machine() -> None:
    sleeper = "import time\ndef total(n):\n    time.sleep(30)\n"
    cfg = CodeVerifierConfig(SandboxConfig(timeout_s=0.5, cpu_s=5))
    verdict = verify(sleeper, SUM_SPEC, cfg)
    assert verdict.passed is False and verdict.details["failure"] == "timeout"
    assert "waited" in verdict.details["first_failure"]["error"]


CRASHERS = {
    "deep": (
        "import sys\nsys.setrecursionlimit(100000)\n"
        "def f(x):\n    v = []\n    for _ in range(3000):\n        v = [v]\n    return v\n"
    ),
    "huge_int_in_complex": (
        "import os\ndef f(x):\n    return 0\n"
        'rec = \'{"t": 0, "k": "v", "v": {"c": [{"ih": "0x%s"}, 0.0]}}\\n\''
        " % ('f' * 5000)\n"
        "os.write(3, rec.encode())\nos._exit(0)\n"
    ),
    "huge_wrong_int": "def f(x):\n    return 10 ** 5000\n",
    "correct": "def f(x):\n    return x + 1\n",
}
EXPECTED = {
    "deep": (None, "unverifiable"),
    "huge_int_in_complex": (False, "runtime_error"),
    "huge_wrong_int": (False, "wrong_answer"),
    "correct": (True, None),
}


@pytest.mark.parametrize(
    "spec",
    [TestSpec.calls("f", [[1]], [2]), TestSpec.mbpp(["assert f(1) == 2"])],
    ids=["call", "assert"],
)
def test_crashing_return_values_get_their_own_verdict(spec: TestSpec) -> None:
    names = sorted(CRASHERS)
    verdicts = verify_batch([CRASHERS[n] for n in names], [spec] * len(names))
    for name, v in zip(names, verdicts, strict=True):
        assert (v.passed, v.details.get("failure")) == EXPECTED[name], (name, v.details)
    huge = verdicts[names.index("huge_wrong_int")].details["first_failure"]
    assert huge["got"].startswith("<int of")


def test_pipeline_finishes_with_a_crashing_sample(tmp_path: Path) -> None:
    """load -> generate (replayed traces) -> verify -> filter -> emit, one sample of
    which returns a value nested 3,000 deep."""
    from datagen.__main__ import run

    problem = "Write f(x) that returns x + 1."
    tests = {"kind": "assert", "test_code": "assert f(1) == 2\nassert f(5) == 6"}
    source = tmp_path / "problems.jsonl"
    source.write_text(json.dumps({"id": "p1", "problem": problem, "tests": tests}) + "\n")
    traces = tmp_path / "traces.jsonl"
    answers = [CRASHERS["deep"], CRASHERS["correct"], "def f(x):\n    return x\n"]
    traces.write_text(
        "".join(
            json.dumps({"problem": problem, "response": f"```python\n{code}```"}) + "\n"
            for code in answers
        )
    )
    cfg = compose(
        "+pipeline=code",
        "pipeline.stages=[load,generate,verify,filter,emit]",
        f"source.path={source}",
        "teacher=replay",
        f"teacher.path={traces}",
        "generation.n=3",
        "run.progress=false",
    )
    summary = run(cfg, tmp_path / "run")
    assert (summary["positives"], summary["negatives"], summary["unverifiable"]) == (1, 1, 1)
    assert run(cfg, tmp_path / "run")["positives"] == 1  # a resume does not die either


@pytest.fixture
def host_socket():
    """A listening unix-domain socket in a host directory anyone may reach."""
    folder = tempfile.mkdtemp(prefix="host-socket-")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "s.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen()
    server.settimeout(0.2)
    accepted: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.sendall(b"hello from the host")
            accepted.append(b"x")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, accepted
    stop.set()
    thread.join()
    server.close()
    os.unlink(path)
    os.rmdir(folder)


TMP_WRITER = """
import os, socket, tempfile, time
def leak():
    made = 0
    for make in (
        lambda: tempfile.mkstemp(dir="/tmp", prefix="leftover-"),
        lambda: open("/tmp/leftover-file", "w"),
        lambda: os.mkdir("/tmp/leftover-dir"),
        lambda: os.mkfifo("/tmp/leftover-fifo"),
        lambda: os.symlink("/etc/passwd", "/tmp/leftover-link"),
    ):
        try:
            make()
            made += 1
        except OSError:
            pass
    if os.fork() == 0:  # a writer that outlives the test, in the working directory
        os.setsid()
        while True:
            open(f"w{time.time_ns()}", "w").close()
            time.sleep(0.001)
    return made
"""


# The venv's interpreter (under a 0700 /root here: workers keep the caller's uid) and,
# where present, the system's (workers drop to an unprivileged uid).
@pytest.mark.parametrize("python", ["", "/usr/bin/python3"], ids=["venv", "system"])
def test_landlock_fallback_blocks_host_sockets_and_leaves_no_files(host_socket, python) -> None:
    if _confine.landlock_abi() < 6 or not _confine.seccomp_supported():
        pytest.skip("needs Landlock ABI >= 6 and x86_64 seccomp")
    if python and not os.access(python, os.X_OK):
        pytest.skip(f"{python} is not here")
    path, accepted = host_socket
    base = SandboxConfig(isolation="landlock", timeout_s=2.0, cpu_s=2, python=python)
    if not get_sandbox(base).isolation.processes:  # refused by default: see test_sandbox_attacks
        base = dataclasses.replace(base, allow_unisolated=True)
    cfg = CodeVerifierConfig(base)
    connect = (
        f"import socket\ndef leak():\n    s = socket.socket(socket.AF_UNIX)\n"
        f"    s.connect({path!r})\n    return s.recv(100).decode()\n"
    )
    before = set(os.listdir("/tmp"))
    verdicts = verify_batch(
        [connect, TMP_WRITER, "def leak():\n    return 0\n"],
        [
            TestSpec.calls("leak", [[]], ["hello from the host"]),
            TestSpec.calls("leak", [[]], [5]),
            TestSpec.calls("leak", [[]], [0]),
        ],
        cfg,
    )
    assert [v.details["isolation"].split("+")[0] for v in verdicts] == ["landlock"] * 3
    assert verdicts[0].passed is False, verdicts[0].details
    assert verdicts[1].passed is False, verdicts[1].details
    assert verdicts[2].passed is True, verdicts[2].details  # the fallback does run code
    assert accepted == []
    time.sleep(0.2)
    new = set(os.listdir("/tmp")) - before
    assert not [n for n in new if n.startswith(("leftover", "verifiers", "w1"))], new
