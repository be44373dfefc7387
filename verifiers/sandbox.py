"""Run untrusted Python in an isolated, resource-limited subprocess.

Layers, outermost first (:attr:`Sandbox.isolation` reports which are active):

1. **bubblewrap** (``isolation="bwrap"``): new network, pid, ipc, uts and cgroup
   namespaces. The root filesystem is an empty tmpfs, remounted read-only, holding
   read-only binds of the system directories and the Python installation only (no
   ``/root``, ``/home``, ``/work``, data or secrets). ``/tmp`` and ``/dev/shm`` are
   size-capped tmpfs; ``/dev`` is read-only. bwrap itself starts with a scrubbed
   environment and ``--clearenv``. When the pid namespace ends, every process in it
   dies, so nothing outlives a run.
2. **Landlock** (kernel >= 5.13): reads only on that same list, writes only in the
   working directory; TCP and (ABI >= 6) signals and abstract sockets cannot leave
   the sandbox. Without bwrap this is the filesystem layer.
3. **Unprivileged uid**: started as root, each worker drops to ``uid - slot`` (65534,
   65533, ... by default). One uid per pool slot keeps ``RLIMIT_NPROC`` (counted per
   uid, and never applied to root) from letting one run starve another, and lets the
   harness kill every leftover process of a run with ``kill(-1)``.
4. **seccomp** (x86_64): no non-unix sockets, namespaces, ptrace, mounts, io_uring,
   SysV IPC.
5. **Limits**: RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NPROC, RLIMIT_NOFILE per
   worker; a wall-clock deadline per worker (the supervisor kills its process group
   and every process of its uid) and one for the whole run (the parent kills the
   sandbox's session); captured output is capped; the resident memory of all of a
   run's processes together is polled and capped.

By default the sandbox is *warm*: each pool slot keeps one supervisor running inside
its bwrap sandbox and forks fresh workers for every run, so a run costs a ``fork``
instead of a bwrap and interpreter start (see ``benchmarks/bench_sandbox.py``). The
workers are forked from a zygote that never saw a job, so no earlier run's code or
values are in their memory. The supervisor never runs candidate code; between runs
it kills all processes of the worker uid and empties ``/tmp`` and ``/dev/shm``.

Pass/fail is never decided inside the sandbox: see :mod:`verifiers._harness`.
Without network, filesystem and process isolation, :meth:`Sandbox.run` refuses to
run untrusted code unless ``SandboxConfig.allow_unisolated`` is set.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from verifiers import _confine, _launch

logger = logging.getLogger(__name__)

ISOLATION_MODES = ("auto", "bwrap", "landlock", "none")
_DEV_RW = ("/dev/null", "/dev/zero", "/dev/full")
_DEV_RO = ("/dev/urandom", "/dev/random")


class SandboxRefused(RuntimeError):
    """The sandbox lacks network, filesystem or process isolation; untrusted code is refused."""


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the candidate): unavailable, crashed, or hung."""


_POSITIVE_INT_FIELDS = (
    *("cpu_s", "memory_bytes", "run_memory_bytes", "stack_bytes", "file_size_bytes"),
    *("tmpfs_bytes", "max_processes", "max_open_files", "stdout_bytes", "stderr_bytes"),
)


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and isolation for one sandboxed execution."""

    isolation: str = "auto"
    """``auto`` (best available), ``bwrap``, ``landlock`` or ``none``; a named mode that
    is unavailable raises :class:`SandboxError`."""
    allow_unisolated: bool = False
    """Run untrusted code even without network, filesystem and process isolation."""
    timeout_s: float = 10.0
    """Wall-clock seconds per worker: all function tests of a program share one
    worker; each stdin/stdout case gets its own."""
    cpu_s: int = 10
    """RLIMIT_CPU per worker, in seconds."""
    memory_bytes: int = 2 << 30
    """RLIMIT_AS per worker (address space, so it also bounds thread stacks)."""
    run_memory_bytes: int = 4 << 30
    """Resident memory of all of a run's processes together (polled every 50 ms);
    RLIMIT_AS alone would allow ``max_processes * memory_bytes``."""
    stack_bytes: int = 256 << 20
    """RLIMIT_STACK per worker (deep recursion); capped by ``memory_bytes``."""
    file_size_bytes: int = 64 << 20
    """RLIMIT_FSIZE: largest file a worker may write."""
    tmpfs_bytes: int = 64 << 20
    """Size of the sandbox's ``/tmp`` and ``/dev/shm`` (bwrap only)."""
    max_processes: int = 64
    """RLIMIT_NPROC for the worker uid (threads count)."""
    max_open_files: int = 256
    """RLIMIT_NOFILE per worker."""
    stdout_bytes: int = 1 << 20
    """Captured stdout per worker; more is an ``output_limit`` failure. The values a
    worker reports for function tests are capped at the same size."""
    stderr_bytes: int = 16 << 10
    """Captured stderr per worker; the rest is dropped."""
    workers: int = 0
    """Concurrent executions; 0 means one per usable CPU core."""
    uid: int = 65534
    """Unprivileged uid for candidate code when started as root; pool slot ``i`` uses
    ``uid - i``. Must be unused by real processes."""
    python: str = ""
    """Interpreter for candidate code; empty means ``sys.executable``."""
    bwrap_path: str = "bwrap"
    """bubblewrap executable (name on PATH or absolute path)."""
    startup_s: float = 15.0
    """Extra wall-clock allowance per run for sandbox start-up and teardown."""
    stop_after_timeout: bool = True
    """Skip the remaining stdin/stdout cases of a program once one times out."""
    warm: bool = True
    """Keep one sandboxed supervisor per pool slot and fork each run's workers from its
    pristine zygote (saves the bwrap and interpreter start-up, ~30-60 ms, per run).
    Each run still gets fresh worker processes, a fresh working directory, and a
    scrubbed ``/tmp``. False starts a new sandbox for every run."""

    def __post_init__(self) -> None:
        self._validate_modes()
        self._validate_limits()

    def _validate_modes(self) -> None:
        if self.isolation not in ISOLATION_MODES:
            raise ValueError(
                f"SandboxConfig.isolation must be one of {ISOLATION_MODES}, got {self.isolation!r}"
            )
        if not 0 < self.uid < 2**31:
            raise ValueError(
                f"SandboxConfig.uid must be a positive uid (e.g. 65534), got {self.uid}"
            )
        if self.workers < 0:
            raise ValueError(
                f"SandboxConfig.workers must be >= 0 (0 = one per core), got {self.workers}"
            )
        if self.uid - max(self.workers, os.cpu_count() or 1) < 1:
            raise ValueError(
                "SandboxConfig.uid is too small for one uid per worker; use e.g. 65534"
            )

    def _validate_limits(self) -> None:
        for name in ("timeout_s", "startup_s"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"SandboxConfig.{name} must be > 0 seconds, got {getattr(self, name)}"
                )
        for name in _POSITIVE_INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"SandboxConfig.{name} must be a positive int, got {value!r}")
        if self.max_open_files < 16:
            raise ValueError(
                "SandboxConfig.max_open_files must be >= 16 (the interpreter needs some)"
            )
        if self.memory_bytes < 64 << 20:
            raise ValueError(
                "SandboxConfig.memory_bytes must be >= 64 MiB for the interpreter to start"
            )


@dataclass(frozen=True)
class Isolation:
    """Which layers are active (see the module docstring)."""

    mode: str
    """``bwrap``, ``landlock`` or ``none``."""
    network: bool
    """Candidate code cannot open network connections (not even to loopback)."""
    filesystem: bool
    """Only the working directory is writable; secrets and data are not readable."""
    processes: bool
    """Candidate code cannot signal or trace processes outside the run and its process
    count is bounded (pid namespace or an unprivileged uid)."""
    pid_namespace: bool
    """Runs live in their own pid namespace (bwrap): nothing outlives the sandbox."""
    landlock_abi: int
    """Landlock ABI applied to workers (0: none)."""
    seccomp: bool
    """The seccomp filter of :mod:`verifiers._confine` is applied to workers."""
    uid: int | None
    """First worker uid, or None when workers keep the caller's uid."""

    @property
    def name(self) -> str:
        """Short label such as ``bwrap+landlock+seccomp``."""
        parts = [self.mode] if self.mode != "none" else []
        if self.landlock_abi and self.mode != "landlock":
            parts.append("landlock")
        if self.seccomp:
            parts.append("seccomp")
        return "+".join(parts) or "none"


@dataclass
class SandboxResult:
    """What came back from one sandboxed run (raw; :mod:`verifiers.code` grades it)."""

    workers: list[dict[str, Any]] = field(default_factory=list)
    """One report per worker: status, exit_code, stdout, stderr, records, timings."""
    complete: bool = False
    """The supervisor reached its end marker (all planned workers ran)."""
    timed_out: bool = False
    """The whole run hit its overall deadline and was killed."""
    wall_s: float = 0.0
    stderr: str = ""
    """Supervisor stderr (harness errors), truncated."""


@dataclass
class _Slot:
    uid: int | None
    supervisor: _launch.Supervisor | None = None


class Sandbox:
    """A configured sandbox: thread-safe, at most ``workers`` runs at a time.

    Example:
        >>> box = Sandbox(SandboxConfig())  # doctest: +SKIP
        >>> box.isolation.name  # doctest: +SKIP
        'bwrap+landlock+seccomp'
    """

    def __init__(self, config: SandboxConfig) -> None:
        """Detect the available isolation (probing bwrap once).

        Raises:
            SandboxError: The isolation mode named in the config is unavailable.
        """
        self.config = config
        self.python = config.python or sys.executable
        self.workers = config.workers or len(os.sched_getaffinity(0))
        self._root = os.geteuid() == 0
        try:
            layout = _launch.python_layout(self.python)
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            raise SandboxError(str(exc)) from exc
        self._read_paths = _launch.read_paths(layout)
        self._site_paths = [
            p for p in layout["path"] if p.endswith(("site-packages", "dist-packages"))
        ]
        self._bwrap = shutil.which(config.bwrap_path)
        self.isolation = self._detect()
        first = self.isolation.uid
        self._slots: queue.Queue[_Slot] = queue.Queue()
        for i in range(self.workers):
            self._slots.put(_Slot(None if first is None else first - i))
        # Supervisors are started from these long-lived threads: bwrap's
        # --die-with-parent fires when the *thread* that started it exits.
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox")
        self._closed = False
        logger.info("sandbox isolation: %s", self.isolation)

    def _detect(self) -> Isolation:
        mode = self.config.isolation
        abi, seccomp = _confine.landlock_abi(), _confine.seccomp_supported()
        if mode in ("auto", "bwrap"):
            problem = self._probe_bwrap()
            if problem is None:
                uid = self.config.uid if self._root else None
                return Isolation("bwrap", True, True, True, True, abi, seccomp, uid)
            if mode == "bwrap":
                raise SandboxError(f"isolation='bwrap' is unavailable: {problem}")
            logger.warning("bubblewrap unavailable (%s); falling back", problem)
        # Without a mount namespace the worker sees the real paths: dropping the uid only
        # works when the interpreter is reachable by others (not under a 0700 /root).
        reachable = self._root and _launch.traversable_by_others(self._read_paths)
        uid = self.config.uid if reachable else None
        # Root ignores RLIMIT_NPROC and may signal anything, so process isolation needs the
        # dropped uid; a non-root caller is unprivileged already (Landlock ABI 6 then
        # also scopes its signals).
        processes = uid is not None or (not self._root and abi >= 6)
        if mode in ("auto", "landlock") and abi > 0:
            return Isolation("landlock", seccomp, True, processes, False, abi, seccomp, uid)
        if mode == "landlock":
            raise SandboxError("isolation='landlock' is unavailable: needs Linux >= 5.13")
        return Isolation("none", False, False, uid is not None, False, 0, False, uid)

    def _bwrap_prefix(self) -> list[str]:
        cfg = self.config
        return _launch.bwrap_argv(str(self._bwrap), cfg.tmpfs_bytes, self._read_paths, self._root)

    def _probe_bwrap(self) -> str | None:
        if self._bwrap is None:
            name = self.config.bwrap_path
            return f"{name!r} not found on PATH (Debian: apt-get install bubblewrap)"
        argv = [*self._bwrap_prefix(), self.python, "-I", "-c", "print('ok')"]
        env = _launch.SCRUBBED_ENV
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        return None if out.stdout.strip() == "ok" else f"probe failed: {out.stderr.strip()[:300]}"

    def _argv(self) -> list[str]:
        harness, site = _launch.harness_args(self.python), json.dumps(self._site_paths)
        argv = [self.python, "-I", "-S", *harness, site]
        return [*self._bwrap_prefix(), *argv] if self.isolation.mode == "bwrap" else argv

    def check_allowed(self) -> None:
        """Raise unless untrusted code may run here.

        Raises:
            SandboxRefused: An isolation layer is missing and ``allow_unisolated`` is False.
        """
        iso = self.isolation
        layers = (
            ("network", iso.network),
            ("filesystem", iso.filesystem),
            ("process", iso.processes),
        )
        if not all(ok for _, ok in layers) and not self.config.allow_unisolated:
            missing = " and ".join(name for name, ok in layers if not ok)
            raise SandboxRefused(
                f"sandbox has no {missing} isolation (mode {iso.mode!r}); install bubblewrap, "
                "or set SandboxConfig.allow_unisolated=True to run untrusted code anyway"
            )

    def run(self, job: dict[str, Any], timeout_s: float | None = None) -> SandboxResult:
        """Run one job (built by :mod:`verifiers.code`) and return the raw reports.

        ``timeout_s`` replaces ``SandboxConfig.timeout_s`` for this run (a retry).

        Raises:
            SandboxRefused: An isolation layer is missing and ``allow_unisolated`` is False.
            SandboxError: The sandbox is closed.
        """
        self.check_allowed()
        iso = self.isolation
        if self._closed:
            raise SandboxError("the sandbox is closed")
        slot = self._slots.get()
        workdir = None
        try:
            if iso.mode != "bwrap":
                workdir = tempfile.mkdtemp(prefix="verifiers-")
                if slot.uid is not None:
                    os.chown(workdir, slot.uid, slot.uid)
            return self._run(job, slot, workdir, timeout_s or self.config.timeout_s)
        finally:
            if workdir is not None:
                self._remove_workdir(workdir, slot.uid)
            self._slots.put(slot)

    def _kill_uid(self, uid: int | None) -> None:
        """Kill every process of a worker uid (those that outlived their supervisor).

        Only the Landlock fallback needs this: under bwrap the pid namespace ends them.
        """
        if uid is None or not self._root:
            return
        ids = f"{uid},{uid},{uid}"
        code = f"import os;os.setgroups([]);os.setresgid({ids});os.setresuid({ids});os.kill(-1,9)"
        subprocess.run([self.python, "-I", "-S", "-c", code], env=_launch.SCRUBBED_ENV, check=False)

    def _remove_workdir(self, workdir: str, uid: int | None) -> None:
        """Remove a Landlock-mode working directory from /tmp, whatever ran in it."""
        for _ in range(5):
            shutil.rmtree(workdir, ignore_errors=True)
            if not os.path.lexists(workdir):
                return
            self._kill_uid(uid)  # something is still writing there
            time.sleep(0.05)
        logger.warning("could not remove the sandbox working directory %s", workdir)

    def _box(self, uid: int | None, workdir: str | None, timeout: float) -> dict[str, Any]:
        cfg, iso = self.config, self.isolation
        in_bwrap = iso.mode == "bwrap"
        work = "/tmp/run" if in_bwrap else str(workdir)
        writes = [work, *_DEV_RW] + (["/dev/shm"] if in_bwrap else [])
        return {
            "workdir": work,
            "scrub": ["/tmp", "/dev/shm"] if in_bwrap else [work],
            "pid_namespace": in_bwrap,
            "unix_sockets": in_bwrap,  # without a mount namespace host sockets are reachable
            "uid": uid,
            "landlock": iso.landlock_abi,
            "seccomp": iso.seccomp,
            "read_paths": [*self._read_paths, "/proc", *_DEV_RO],
            "write_paths": writes,
            "timeout": timeout,
            "run_memory": cfg.run_memory_bytes,
            "stdout_cap": cfg.stdout_bytes,
            "stderr_cap": cfg.stderr_bytes,
            "records_cap": cfg.stdout_bytes,
            "stop_after_timeout": cfg.stop_after_timeout,
            "limits": {
                "memory": cfg.memory_bytes,
                "cpu": cfg.cpu_s,
                "fsize": cfg.file_size_bytes,
                "nofile": cfg.max_open_files,
                "nproc": cfg.max_processes,
                "stack": cfg.stack_bytes,
            },
        }

    def _run(
        self, job: dict[str, Any], slot: _Slot, workdir: str | None, timeout: float
    ) -> SandboxResult:
        cfg = self.config
        box = self._box(slot.uid, workdir, timeout)
        payload = json.dumps({**job, "box": box}).encode() + b"\n"
        n_workers = (1 if job.get("ref_exprs") else 0) + (
            len(job["stdin"]) if job["kind"] == "stdio" else 1
        )
        start = time.monotonic()
        deadline = start + cfg.startup_s + n_workers * (timeout + 1.0)
        # Per worker: stdout, records and stderr, JSON-escaped (a control character
        # becomes 6 bytes), plus the report itself.
        cap = n_workers * (6 * (2 * cfg.stdout_bytes + cfg.stderr_bytes) + (64 << 10))
        sup = slot.supervisor
        if sup is None or not sup.alive():
            if sup is not None:
                sup.close()
            sup = slot.supervisor = _launch.Supervisor(self._argv())
        frames, complete, timed_out = [], False, False
        try:
            frames, complete, timed_out = sup.exchange(payload, deadline, cap)
        finally:
            if not complete or not cfg.warm:
                stderr = sup.stderr_tail()
                sup.close()
                slot.supervisor = None
                if not complete and self.isolation.mode != "bwrap":
                    self._kill_uid(slot.uid)
            else:
                stderr = ""
        return SandboxResult(frames, complete, timed_out, time.monotonic() - start, stderr)

    def close(self) -> None:
        """Stop every supervisor; further runs raise :class:`SandboxError`."""
        self._closed = True
        self.pool.shutdown(wait=True)
        while not self._slots.empty():
            slot = self._slots.get()
            if slot.supervisor is not None:
                slot.supervisor.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SHARED: dict[SandboxConfig, Sandbox] = {}
_SHARED_LOCK = threading.Lock()


def get_sandbox(config: SandboxConfig) -> Sandbox:
    """Return the shared :class:`Sandbox` for ``config`` (frozen configs are hashable)."""
    with _SHARED_LOCK:
        box = _SHARED.get(config)
        if box is None or box._closed:
            box = _SHARED[config] = Sandbox(config)
        return box


@atexit.register
def close_shared_sandboxes() -> None:
    """Stop the supervisors of every sandbox made by :func:`get_sandbox`."""
    with _SHARED_LOCK:
        for box in _SHARED.values():
            box.close()
        _SHARED.clear()
