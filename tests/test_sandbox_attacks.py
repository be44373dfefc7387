"""Hostile programs: each must be contained and reported as failing (``passed is False``).

Every attack is graded against a spec that it could only pass if the attack worked:
exfiltration attacks must return the real secret, escape attacks must report success,
forgeries must be accepted as correct answers. After the suite the host must be
unchanged: no leftover processes, files or listening sockets.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import textwrap
import threading
import time
from pathlib import Path

import pytest

from verifiers.code import CodeVerifierConfig, TestSpec, verify, verify_batch
from verifiers.sandbox import SandboxConfig, SandboxRefused, close_shared_sandboxes, get_sandbox

CFG = CodeVerifierConfig(SandboxConfig(timeout_s=2.0, cpu_s=2, max_processes=32))
SECRET_ENV = "DATAGEN_TEST_FAKE_API_KEY"
TWO_SUM = TestSpec.leetcode(
    "def check(candidate):\n"
    "    assert candidate(nums=[2, 7, 11, 15], target=9) == [0, 1]\n"
    "    assert candidate(nums=[3, 2, 4], target=6) == [1, 2]\n",
    "Solution().twoSum",
)
WRONG_TWO_SUM = "class Solution:\n    def twoSum(self, nums, target):\n        return [9, 9]\n"
MBPP_FIXTURE = Path(__file__).parent / "fixtures" / "code" / "mbpp_train.jsonl"
PWNED_IN_REPO = Path(__file__).parent / "pwned"


def _returns(expected: object) -> TestSpec:
    """Spec that passes only if ``leak()`` returns ``expected``."""
    return TestSpec.calls("leak", [[]], [expected])


def _sandbox_uids() -> set[int]:
    box = get_sandbox(CFG.sandbox)
    first = box.isolation.uid
    return set() if first is None else {first - i for i in range(box.workers)}


def _processes_of(uids: set[int]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid in uids:
                    found.append(int(entry.name))
            except FileNotFoundError:
                continue
    return found


def _listening_sockets() -> set[tuple[str, int]]:
    """(local address, owner uid) of every listening TCP socket in the host's namespace."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                found.add((fields[1], int(fields[7])))
    return found


def _children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory):
    """Host state to attack (a listener, a secret env var, a root-only file) and to restore."""
    os.environ[SECRET_ENV] = "sk-" + secrets.token_hex(16)
    secret_dir = tmp_path_factory.mktemp("secret")
    secret_dir.chmod(0o700)
    secret_file = secret_dir / "id_ed25519"
    secret_file.write_text("PRIVATE-" + secrets.token_hex(16))
    secret_file.chmod(0o600)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append(conn.recv(100))
            conn.sendall(b"hello from the host\n")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    tmp_before = set(os.listdir("/tmp"))
    # Worker pools of other tests (math verifier, Ray) may be children of pytest already.
    children_before = set(_children_of(os.getpid()))
    info = {
        "port": listener.getsockname()[1],
        "accepted": accepted,
        "secret_file": str(secret_file),
        "marker": f"/tmp/verifiers-attack-{secrets.token_hex(4)}",
        "pid": os.getpid(),
        "env_secret": os.environ[SECRET_ENV],
        "shadow": Path("/etc/shadow").read_text()
        if os.access("/etc/shadow", os.R_OK)
        else "unreadable",
        "secret": secret_file.read_text(),
        "home": sorted(os.listdir(os.path.expanduser("~root"))),
        "fixture_head": MBPP_FIXTURE.read_text()[:20],
    }
    yield info
    stop.set()
    thread.join()
    listener.close()
    close_shared_sandboxes()
    assert accepted == [], "a sandboxed program reached the host's loopback listener"
    # Other programs on a shared machine open ports too: look for ours only.
    sandbox_uids = {65534 - i for i in range(os.cpu_count() or 1)}
    assert not [s for s in _listening_sockets() if s[1] in sandbox_uids], "a port was left open"
    assert not [s for s in _listening_sockets() if s[0].endswith(f":{info['port']:04X}")]
    outlived = set(_children_of(os.getpid())) - children_before
    assert outlived == set(), "sandbox processes outlived close()"
    assert _processes_of(sandbox_uids) == [], "processes of the sandbox uids survived"
    leftover = [n for n in set(os.listdir("/tmp")) - tmp_before if n.startswith("verifiers")]
    assert leftover == [], f"files left in /tmp: {leftover}"
    del os.environ[SECRET_ENV]


def _program(source: str) -> str:
    return textwrap.dedent(source).lstrip("\n")


def _attacks(h: dict) -> dict[str, tuple[str, TestSpec]]:
    """name -> (program, spec it must fail)."""
    port, secret_file, marker = h["port"], h["secret_file"], h["marker"]
    outside = (marker, "/etc/verifiers-pwned", "/root/verifiers-pwned", str(PWNED_IN_REPO))
    ssh = "/root/.ssh"
    return {
        "fork_bomb": (
            _program("""
                import os
                while True:
                    try:
                        os.fork()
                    except OSError:
                        pass
            """),
            TWO_SUM,
        ),
        "memory_bomb": (
            "blocks = []\nwhile True:\n    blocks.append(bytearray(1 << 26))\n",
            TWO_SUM,
        ),
        "huge_allocation": ("x = 'x' * (1 << 40)\n", TWO_SUM),
        "fork_and_allocate": (
            _program("""
                import os, time
                for _ in range(12):
                    if os.fork() == 0:
                        break
                blocks = [b'x' * (64 << 20) for _ in range(24)]
                time.sleep(10)
            """),
            TWO_SUM,
        ),
        "infinite_loop": ("while True:\n    pass\n", TWO_SUM),
        "disk_fill_one_file": (
            _program("""
                with open('big', 'wb') as f:
                    while True:
                        f.write(b'0' * (1 << 20))
            """),
            TWO_SUM,
        ),
        "disk_fill_many_files": (
            _program("""
                i = 0
                while True:
                    open(f'f{i}', 'wb').write(b'0' * (8 << 20))
                    i += 1
            """),
            TWO_SUM,
        ),
        "stdout_flood": ("while True:\n    print('x' * 4096)\n", TWO_SUM),
        "loopback_connect": (
            _program(f"""
                import socket
                def leak():
                    s = socket.create_connection(('127.0.0.1', {port}), timeout=1)
                    s.sendall(b'hi')
                    return s.recv(100).decode()
            """),
            _returns("hello from the host\n"),
        ),
        "udp_send": (
            _program(f"""
                import socket
                def leak():
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.sendto(b'x', ('127.0.0.1', {port}))
                    return 'sent'
            """),
            _returns("sent"),
        ),
        "read_etc_shadow": (
            "def leak():\n    return open('/etc/shadow').read()\n",
            _returns(h["shadow"]),
        ),
        "read_root_only_file": (
            f"def leak():\n    return open({secret_file!r}).read()\n",
            _returns(h["secret"]),
        ),
        "list_home": (
            "import os\ndef leak():\n    return sorted(os.listdir(os.path.expanduser('~root')))\n",
            _returns(h["home"]),
        ),
        "read_ssh_dir": (
            f"import os\ndef leak():\n    return sorted(os.listdir({ssh!r}))\n",
            _returns(sorted(os.listdir(ssh)) if os.path.isdir(ssh) else ["no .ssh on host"]),
        ),
        "read_env_secret": (
            f"import os\ndef leak():\n    return os.environ.get({SECRET_ENV!r}, 'none')\n",
            _returns(h["env_secret"]),
        ),
        "scan_proc_environ": (
            _program(f"""
                import os
                def leak():
                    for p in os.listdir('/proc'):
                        try:
                            for kv in open(f'/proc/{{p}}/environ', 'rb').read().split(b'\\0'):
                                if kv.startswith({SECRET_ENV.encode()!r}):
                                    return kv.split(b'=', 1)[1].decode()
                        except OSError:
                            pass
                    return 'none'
            """),
            _returns(h["env_secret"]),
        ),
        "read_dataset_answers": (
            f"def leak():\n    return open({str(MBPP_FIXTURE)!r}).readline()[:20]\n",
            _returns(h["fixture_head"]),
        ),
        "write_outside_tmp": (
            _program(f"""
                def leak():
                    ok = 0
                    for p in {outside!r}:
                        try:
                            open(p, 'w').write('x')
                            ok += 1
                        except OSError:
                            pass
                    return ok
            """),
            _returns(len(outside)),
        ),
        "kill_parents": (
            _program(f"""
                import os, signal
                def leak():
                    hits = 0
                    for pid in (os.getppid(), 1, {h["pid"]}, -1):
                        try:
                            os.kill(pid, signal.SIGKILL)
                            hits += 1
                        except OSError:
                            pass
                    return hits
            """),
            _returns(4),
        ),
        "background_process": (
            _program("""
                import os, time
                if os.fork() == 0:
                    os.setsid()
                    if os.fork() == 0:
                        time.sleep(30)
                    os._exit(0)
            """)
            + WRONG_TWO_SUM,
            TWO_SUM,
        ),
        "os_exit_before_tests": ("import os\nos._exit(0)\n", TWO_SUM),
        "sys_exit_before_tests": ("import sys\nsys.exit(0)\n", TWO_SUM),
        "exit_inside_candidate": (
            WRONG_TWO_SUM.replace("return [9, 9]", "raise SystemExit(0)"),
            TWO_SUM,
        ),
        "forge_success_marker": (
            _program("""
                import os
                print('All tests passed!')
                os.write(1, b'{"ev": "end"}\\n')
                os.write(3, b'{"ev": "done"}\\n{"t": 0, "ok": true}\\n')
                os._exit(0)
            """),
            TWO_SUM,
        ),
        "forge_records": (
            _program("""
                import os
                for i in range(2):
                    os.write(3, b'{"t": %d, "k": "v", "v": true}\\n' % i)
            """)
            + WRONG_TWO_SUM,
            TWO_SUM,
        ),
        "monkeypatch_harness": (
            _program("""
                import gc, json
                __dg_rec__ = lambda i, f: None
                json.dumps = lambda *a, **k: '{"ev": "done"}'
                for obj in gc.get_objects():
                    if callable(obj) and getattr(obj, '__name__', '') in ('_enc', '_record_value'):
                        obj.__code__ = (lambda *a, **k: None).__code__
            """)
            + WRONG_TWO_SUM,
            TWO_SUM,
        ),
        "override_assert_print_exit": (
            _program("""
                import builtins, sys
                builtins.AssertionError = type('Nope', (Exception,), {})
                builtins.print = lambda *a, **k: None
                sys.exit = lambda *a: None
            """)
            + WRONG_TWO_SUM,
            TWO_SUM,
        ),
        "always_equal_object": (
            _program("""
                class Eq:
                    def __eq__(self, other):
                        return True
                    __hash__ = object.__hash__
            """)
            + WRONG_TWO_SUM.replace("[9, 9]", "Eq()"),
            TWO_SUM,
        ),
        "list_subclass_equal": (
            "class Liar(list):\n    def __eq__(self, other):\n        return True\n"
            + WRONG_TWO_SUM.replace("[9, 9]", "Liar([9, 9])"),
            TWO_SUM,
        ),
        "close_result_fd": (
            "import os\nos.close(3)\n" + WRONG_TWO_SUM.replace("9, 9", "0, 1"),
            TWO_SUM,
        ),
        "new_user_namespace": (
            "import ctypes\ndef leak():\n    return ctypes.CDLL(None).unshare(0x50000000)\n",
            _returns(0),
        ),
        "stdout_control_char_flood": (
            "import sys\nwhile True:\n    sys.stdout.write(chr(1) * 65536)\n",
            TestSpec.stdio(["1\n"], ["1\n"]),
        ),
        "records_flood": ("import os\nwhile True:\n    os.write(3, bytes(65536))\n", TWO_SUM),
        "inode_flood": (
            "import os\nos.makedirs('d', exist_ok=True)\ni = 0\nwhile True:\n"
            "    open(f'd/{i}', 'w').close()\n    i += 1\n",
            TWO_SUM,
        ),
        "fd_exhaustion": ("fs = []\nwhile True:\n    fs.append(open('/dev/null'))\n", TWO_SUM),
    }


_DUMMY_HOST = dict.fromkeys(("port", "pid"), 1) | dict.fromkeys(
    ("secret_file", "marker", "env_secret", "shadow", "secret", "home", "fixture_head"), ""
)
ATTACK_NAMES = sorted(_attacks(_DUMMY_HOST))


@pytest.fixture(scope="module")
def verdicts(host: dict) -> dict[str, object]:
    attacks = _attacks(host)
    names = sorted(attacks)
    results = verify_batch([attacks[n][0] for n in names], [attacks[n][1] for n in names], CFG)
    return dict(zip(names, results, strict=True))


def test_isolation_is_active() -> None:
    iso = get_sandbox(CFG.sandbox).isolation
    assert iso.network and iso.filesystem, iso


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_attack_is_contained(name: str, verdicts: dict, host: dict) -> None:
    verdict = verdicts[name]
    if verdict.passed is None:  # a resource attack starved by other load: never a pass
        assert "busy machine" in verdict.details["first_failure"]["error"], verdict.details
        return
    assert verdict.passed is False, (name, verdict.details)
    assert verdict.details["failure"] is not None


def test_attack_count() -> None:
    assert len(ATTACK_NAMES) >= 20


def test_no_trace_left_on_host(verdicts: dict, host: dict) -> None:
    time.sleep(0.2)
    assert _processes_of(_sandbox_uids()) == [], "processes of the sandbox uids survived"
    for path in (
        host["marker"],
        "/etc/verifiers-pwned",
        "/root/verifiers-pwned",
        Path(__file__).parent / "pwned",
    ):
        assert not os.path.exists(path), path
    # The sandbox still works after the attacks.
    good = "class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n" + (
        "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
        "                return [seen[target - x], i]\n            seen[x] = i\n"
    )
    assert verify(good, TWO_SUM, CFG).passed is True


def test_failure_classes_of_resource_attacks(verdicts: dict) -> None:
    assert verdicts["infinite_loop"].details["failure"] == "timeout"
    assert verdicts["huge_allocation"].details["failure"] == "memory_limit"
    # Touching 2 GiB can take longer than the 2 s test timeout on a loaded machine.
    assert verdicts["memory_bomb"].details["failure"] in ("memory_limit", "timeout")
    assert verdicts["fork_and_allocate"].details["failure"] in ("memory_limit", "timeout")
    assert verdicts["stdout_flood"].details["failure"] == "output_limit"
    assert verdicts["stdout_control_char_flood"].details["failure"] == "output_limit"
    assert verdicts["disk_fill_one_file"].details["failure"] == "runtime_error"


def test_unisolated_is_refused_unless_allowed() -> None:
    none = SandboxConfig(isolation="none", timeout_s=2.0)
    refused = verify(WRONG_TWO_SUM, TWO_SUM, CodeVerifierConfig(none))
    assert refused.passed is None
    assert "SandboxRefused" in refused.details["error"]
    with pytest.raises(SandboxRefused, match="allow_unisolated"):
        verify(WRONG_TWO_SUM, TWO_SUM, CodeVerifierConfig(none, raise_on_error=True))
    allowed = SandboxConfig(isolation="none", timeout_s=2.0, allow_unisolated=True)
    ran = verify(WRONG_TWO_SUM, TWO_SUM, CodeVerifierConfig(allowed))
    assert ran.passed is False and ran.details["failure"] == "wrong_answer"
    assert ran.details["isolation"] == "none"


LANDLOCK_ATTACKS = (
    "loopback_connect",
    "udp_send",
    "read_root_only_file",
    "read_env_secret",
    "scan_proc_environ",
    "read_dataset_answers",
    "write_outside_tmp",
    "kill_parents",
    "new_user_namespace",
    "os_exit_before_tests",
    "forge_success_marker",
    "disk_fill_one_file",
)


def test_landlock_fallback_contains_attacks(host: dict) -> None:
    """Without bwrap, Landlock + seccomp (+ the uid drop where possible) contain these."""
    from verifiers import _confine

    if _confine.landlock_abi() < 6 or not _confine.seccomp_supported():
        pytest.skip("needs Landlock ABI >= 6 (signal scoping) and x86_64 seccomp")
    base = SandboxConfig(isolation="landlock", timeout_s=2.0, cpu_s=2)
    iso = get_sandbox(base).isolation
    assert iso.network and iso.filesystem
    if not iso.processes:
        # Workers stay root when the interpreter is unreachable for other uids (here:
        # under a 0700 /root), so process counts are unbounded: refused by default.
        refused = verify(WRONG_TWO_SUM, TWO_SUM, CodeVerifierConfig(base))
        assert refused.passed is None and "process isolation" in refused.details["error"]
        base = dataclasses.replace(base, allow_unisolated=True)
    attacks = _attacks(host)
    codes = [attacks[n][0] for n in LANDLOCK_ATTACKS]
    results = verify_batch(
        codes, [attacks[n][1] for n in LANDLOCK_ATTACKS], CodeVerifierConfig(base)
    )
    for name, verdict in zip(LANDLOCK_ATTACKS, results, strict=True):
        assert verdict.details["isolation"].startswith("landlock"), verdict.details
        assert verdict.passed is False, (name, verdict.details)
    for path in (host["marker"], "/etc/verifiers-pwned", "/root/verifiers-pwned", PWNED_IN_REPO):
        assert not os.path.exists(path), path
