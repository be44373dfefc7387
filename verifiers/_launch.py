"""Parent-side process plumbing for :mod:`verifiers.sandbox`.

Finds what the interpreter needs to be visible, builds the bubblewrap command line,
assembles the in-sandbox script (``_confine.py`` + ``_worker.py`` + ``_harness.py``)
and talks to one supervisor process over its stdin/stdout.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import marshal
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from verifiers._asserts import PARSE_LOCK

# Read-only inside the sandbox; nothing else of the host is visible (no /root, /home,
# /work, /tmp, /var, /run), so datasets with expected answers cannot be read.
SYSTEM_PATHS = (
    *("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"),
    *("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"),
    *("/etc/passwd", "/etc/group", "/etc/nsswitch.conf"),
)
SCRUBBED_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def python_layout(python: str) -> dict[str, Any]:
    """Ask the interpreter, started with ``-I``, where it lives and what it imports from.

    The caller's own ``sys.path`` is not used: under pytest or an editable install it
    holds the project directory, whose data and tests the sandbox must not see.

    Raises:
        RuntimeError: The interpreter does not start.
    """
    code = (
        "import json,sys;print(json.dumps(dict(executable=sys.executable,"
        "prefix=sys.prefix,base_prefix=sys.base_prefix,path=sys.path)))"
    )
    out = subprocess.run(
        [python, "-I", "-c", code], capture_output=True, text=True, timeout=60, env=SCRUBBED_ENV
    )
    if out.returncode != 0:
        raise RuntimeError(f"cannot start SandboxConfig.python={python!r}: {out.stderr[:300]}")
    return json.loads(out.stdout)


def read_paths(layout: dict[str, Any]) -> list[str]:
    """System paths plus the interpreter's installation and site-packages, deduplicated."""
    exe = Path(layout["executable"])
    roots = [layout["prefix"], layout["base_prefix"], str(exe.parent)]
    roots += [str(exe.resolve().parent.parent)]
    roots += [os.path.realpath(p) for p in roots]
    inside = [p for p in layout["path"] if any(os.path.realpath(p).startswith(r) for r in roots)]
    wanted = {os.path.abspath(p) for p in [*SYSTEM_PATHS, *roots, *inside] if os.path.lexists(p)}
    paths: list[str] = []
    for p in sorted(wanted):
        if not any(p.startswith(q.rstrip("/") + "/") for q in paths):
            paths.append(p)
    return paths


def traversable_by_others(paths: list[str]) -> bool:
    """True when an unprivileged uid can reach every path (o+x on all ancestors)."""
    for p in paths:
        for part in [*list(Path(p).parents)[::-1][1:], Path(p)]:
            try:
                mode = part.stat().st_mode
            except OSError:
                return False
            if part.is_dir() and not mode & 0o001:
                return False
    return True


def bwrap_argv(bwrap: str, tmpfs_bytes: int, paths: list[str], root: bool) -> list[str]:
    """The bubblewrap command line (up to and including ``--``).

    Started as root, bwrap needs no user namespace; the harness itself drops each
    worker to an unprivileged uid (a user namespace would map the sandbox uid back
    to root outside, which could then read root-owned files).
    """
    argv = [bwrap, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    argv += ["--unshare-cgroup-try"] + ([] if root else ["--unshare-user"])
    argv += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]
    size = str(tmpfs_bytes)
    # /tmp first: an interpreter or venv that lives under /tmp (a CI clone, say) is then
    # bound on top of the sandbox's own /tmp instead of being hidden by it.
    argv += ["--size", size, "--perms", "1777", "--tmpfs", "/tmp"]
    made = {"/", "/tmp"}
    for p in paths:
        for parent in [str(a) for a in Path(p).parents][::-1]:
            if parent not in made:
                argv += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        if os.path.islink(p) and p in SYSTEM_PATHS:
            argv += ["--symlink", os.readlink(p), p]
        else:
            argv += ["--ro-bind", p, p]
        made.add(p)
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--size", size, "--perms", "1777", "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    argv += ["--remount-ro", "/"]
    argv += ["--chdir", "/tmp", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin"]
    argv += ["--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp"]
    return [*argv, "--setenv", "LANG", "C.UTF-8", "--"]


@functools.cache
def harness_script() -> str:
    """Source of the in-sandbox program (stdlib only)."""
    here = Path(__file__).parent
    parts = ("_confine.py", "_worker.py", "_harness.py")
    return "\n".join((here / name).read_text() for name in parts)


@functools.cache
def harness_args(python: str) -> tuple[str, ...]:
    """``-c`` arguments that run the harness.

    For this very interpreter the harness is compiled once here and passed as
    marshalled bytecode, which saves compiling ~800 lines at every sandbox start.
    """
    if os.path.realpath(python) != os.path.realpath(sys.executable):
        return ("-c", harness_script())
    with PARSE_LOCK:  # compiling from pool threads at once trips a CPython 3.11 bug
        code = compile(harness_script(), "<verifiers-harness>", "exec")
    blob = base64.b64encode(marshal.dumps(code)).decode()
    loader = "import base64,marshal,sys;exec(marshal.loads(base64.b64decode(sys.argv.pop(1))))"
    return ("-c", loader, blob)


class Supervisor:
    """One harness process (inside bwrap when available) serving jobs over its stdin."""

    def __init__(self, argv: list[str]) -> None:
        """Start the process in a new session with a scrubbed environment."""
        # Kept open for the supervisor's lifetime; closed in close().
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=SCRUBBED_ENV,
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        os.set_blocking(self.proc.stdin.fileno(), False)
        self._buf = bytearray()

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def _frames(self, frames: list[dict], pending: list[dict]) -> bool:
        """Parse complete frames out of the buffer; True once the end marker is seen.

        A frame with ``"raw": n`` is followed by ``n`` bytes of records (the ``ref``
        worker's values, sent by ``sendfile``), kept as its ``records``.
        """
        while True:
            if pending:
                need = pending[0]["raw"]
                if len(self._buf) < need:
                    return False
                pending[0]["records"] = self._buf[:need].decode("utf-8", "replace")
                frames.append(pending.pop())
                del self._buf[:need]
                continue
            newline = self._buf.find(b"\n")
            if newline < 0:
                return False
            line = bytes(self._buf[:newline])
            del self._buf[: newline + 1]
            try:
                frame = json.loads(line)
            except ValueError:
                continue
            if frame.get("ev") == "end":
                return True
            if frame.get("ev") == "worker" and isinstance(frame.get("raw"), int):
                pending.append(frame)
            elif frame.get("ev") == "worker":
                frames.append(frame)

    def exchange(self, payload: bytes, deadline: float, cap: int) -> tuple[list[dict], bool, bool]:
        """Send one job line; return (worker frames, reached the end marker, timed out)."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(stdin.fileno(), selectors.EVENT_WRITE, "in")
        sel.register(stdout.fileno(), selectors.EVENT_READ, "out")
        view, frames, pending, size = memoryview(payload), [], [], 0
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return frames, False, True
                for key, _ in sel.select(left):
                    if key.data == "in":
                        try:
                            view = view[os.write(key.fd, view[: 1 << 16]) :]
                        except BrokenPipeError:
                            return frames, False, False
                        if not view:
                            sel.unregister(key.fd)
                        continue
                    chunk = os.read(key.fd, 1 << 16)
                    size += len(chunk)
                    if not chunk or size > cap:
                        return frames, False, False
                    self._buf += chunk
                    if self._frames(frames, pending):
                        return frames, True, False
        finally:
            sel.close()

    def stderr_tail(self) -> str:
        """The last 4000 bytes the supervisor wrote to stderr (harness errors)."""
        self._stderr.seek(0, os.SEEK_END)
        self._stderr.seek(max(self._stderr.tell() - 4000, 0))
        return self._stderr.read().decode("utf-8", "replace")

    def close(self) -> None:
        """Stop the supervisor and everything in its session (and pid namespace)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self._stderr):
            if stream is not None and not stream.closed:
                stream.close()
