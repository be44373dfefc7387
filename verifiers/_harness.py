"""Supervisor of the sandbox (``python -I -S -c <source>``): forks and watches workers.

Stdlib only. :mod:`verifiers._launch` pastes ``_confine.py``, ``_worker.py`` and this
file into one script; nothing here imports ``verifiers``.

Protocol. The parent writes jobs, one JSON line each, to the supervisor's stdin. The
supervisor never runs candidate code: for each job it starts one *worker* per
execution group (all function-style tests of a program share one worker; each
stdin/stdout case gets its own; an optional ``ref`` worker computes expected values
with no candidate code loaded, before the candidate runs), confines it, watches it
with a wall-clock deadline, output caps and a memory watchdog, kills whatever it
left behind, and reports each worker as one JSON line on stdout, which only the
parent reads, followed by ``{"ev": "end"}``.

Clean images. Workers are not forked from the supervisor, whose heap has held every
job and every report: at start-up, before it reads any job, the supervisor forks a
*zygote* that never sees one. For each worker the supervisor passes the zygote only
file descriptors (``SCM_RIGHTS``): stdin, stdout, stderr, the records channel, and
a memfd holding that worker's part of the job (a candidate worker's part has no
``ref`` expressions; no part has expected values or another program's code). The
zygote forks twice, so the worker is re-parented to the supervisor (a child
subreaper), which waits for it as before. Nothing the candidate can reach (frames,
namespace, fds, inherited memory) holds an expected value or another candidate's
code; what it writes on fd 3 is only "the value the program produced", which the
parent compares with expectations it never sent.
"""

import builtins
import contextlib
import fcntl
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pasted in front of this file at run time
    from verifiers._confine import set_child_subreaper, set_not_dumpable, set_parent_death_signal
    from verifiers._worker import confine_worker, worker_main, write_record

# What the LeetCode preamble imports: loaded once per supervisor, not once per worker.
_PREIMPORT = "bisect collections datetime functools heapq itertools math operator re string typing"
_PAGE = os.sysconf("SC_PAGE_SIZE")
_ZYGOTE = {}  # pid and socket of the zygote (see the module docstring)
# A worker's part of the job, by worker kind: no ``ref_exprs`` for candidate workers.
_PARTS = {
    "ref": ("kind", "setup", "ref_exprs"),
    "func": ("kind", "code", "setup", "test_code", "fn_name", "inputs"),
    "stdio": ("kind", "code", "setup"),
}


def _stdin_fd(data):
    fd = os.memfd_create("stdin", 0)
    view = memoryview(data.encode())
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _uid_rss(uid):
    """Resident bytes of all processes owned by ``uid`` (the run's processes)."""
    total = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat("/proc/" + name).st_uid != uid:
                    continue
                with open(f"/proc/{name}/statm", "rb") as f:
                    total += int(f.read().split()[1]) * _PAGE
            except (OSError, ValueError, IndexError):
                continue
    return total


def _run_pids(pid, box):
    """The run's processes: all of the worker uid's, all but ours in a pid namespace."""
    uid, mine = box["uid"], (os.getpid(), _ZYGOTE.get("pid"))
    if not uid and not box["pid_namespace"]:
        return [pid]
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in mine:
            try:
                if not uid or os.stat("/proc/" + name).st_uid == uid:
                    found.append(int(name))
            except OSError:
                continue
    return found


def _cpu_use(pid, box):
    """``(runnable, cpu)``: the longest time one of the run's threads spent on a CPU
    or waiting for one (far below the wall time: the program was waiting, not
    starved), and the CPU time of all its live threads together."""
    best = total = 0
    for p in _run_pids(pid, box):
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/schedstat", "rb") as f:
                    on_cpu, waiting = f.read().split()[:2]
                best = max(best, (int(on_cpu) + int(waiting)) / 1e9)
                total += int(on_cpu) / 1e9
            except (OSError, ValueError):
                continue
    return best, total


def _watch(pid, fds, caps, box):
    """Collect a worker's pipes until it exits, times out, floods stdout or memory."""
    sel = selectors.DefaultSelector()
    pidfd = os.pidfd_open(pid)
    sel.register(pidfd, selectors.EVENT_READ, "exit")
    bufs = {name: bytearray() for name in fds}
    truncated = {name: False for name in fds}
    for name, fd in fds.items():
        sel.register(fd, selectors.EVENT_READ, name)
    uid = box["uid"]
    start = next_poll = time.monotonic()
    deadline, status, exited_at = start + box["timeout"], "exited", None
    while status == "exited":
        now = time.monotonic()
        if now >= deadline:
            status = "timeout"
            break
        if exited_at is not None and (not sel.get_map() or now - exited_at > 0.2):
            break  # done, or a leftover grandchild still holds the pipes open
        if uid and now >= next_poll:
            # RLIMIT_AS is per process; this bounds a fork + allocate bomb as a whole.
            next_poll = now + 0.05
            if _uid_rss(uid) > box["run_memory"]:
                status = "memory_limit"
                break
        wait = deadline - now if exited_at is None else 0.2 - (now - exited_at)
        wait = min(wait, max(next_poll - now, 0.0)) if uid else wait
        for key, _ in sel.select(wait):
            if key.data == "exit":
                exited_at = time.monotonic()
                sel.unregister(pidfd)
                continue
            chunk = os.read(key.fd, 1 << 16)
            if not chunk:
                sel.unregister(key.fd)
                continue
            room = caps[key.data] - len(bufs[key.data])
            bufs[key.data] += chunk[: max(room, 0)]
            if len(chunk) > room:
                truncated[key.data] = True
                if key.data in ("stdout", "records"):
                    status = "output_limit"
    wall = time.monotonic() - start
    runnable, run_cpu = _cpu_use(pid, box) if status == "timeout" else (wall, 0.0)
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    _, wstatus, usage = os.wait4(pid, 0)
    for fd in [*fds.values(), pidfd]:
        os.close(fd)
    sel.close()
    result = {
        "status": status,
        "exit_code": os.waitstatus_to_exitcode(wstatus),
        "wall_s": round(wall, 4),
        "runnable_s": round(runnable, 4),
        "run_cpu_s": round(run_cpu, 4),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 4),
        "maxrss_kb": usage.ru_maxrss,
    }
    for name in fds:
        result[name] = bufs[name].decode("utf-8", "replace")
        result[name + "_truncated"] = truncated[name]
    return result


def _spawn(job, kind, case):
    """Start (through the zygote), watch and report one worker; for ``ref``, a memfd."""
    box = job["box"]
    stdin_fd = _stdin_fd(job["stdin"][case] if kind == "stdio" else "")
    part = {k: job[k] for k in _PARTS[kind] if k in job}
    job_fd = _stdin_fd(json.dumps({**part, "worker": kind, "box": box}))
    pipes = {name: os.pipe() for name in ("stdout", "stderr")}
    if kind == "ref":
        records_r, records_w = None, os.memfd_create("ref", 0)
    else:
        records_r, records_w = os.pipe()
    handed = [stdin_fd, pipes["stdout"][1], pipes["stderr"][1], records_w, job_fd]
    socket.send_fds(_ZYGOTE["sock"], [b"w"], handed)
    pid = int(_ZYGOTE["sock"].recv(32))
    for fd in (stdin_fd, job_fd, *(w for _, w in pipes.values())):
        os.close(fd)
    fds = {n: r for n, (r, _) in pipes.items()}
    caps = {"stdout": box["stdout_cap"], "stderr": box["stderr_cap"], "records": box["records_cap"]}
    if records_r is not None:
        os.close(records_w)
        fds["records"] = records_r
    result = _watch(pid, fds, caps, box)
    result.update(ev="worker", kind=kind, case=case)
    _reap(box)  # background processes must not run into the next case
    return result, (records_w if kind == "ref" else None)


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _become_worker(fds, supervisor):
    """In the zygote's grandchild: take the handed fds, then confine and run the job."""
    code = 121
    try:
        os.setpgid(0, 0)
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in fds]
        for target, fd in enumerate(high):  # 0 stdin, 1 stdout, 2 stderr, 3 records, 4 job
            os.dup2(fd, target)
        os.closerange(5, 1 << 16)
        while os.getppid() != supervisor:  # until the zygote's child has exited
            os.sched_yield()
        set_parent_death_signal(signal.SIGKILL)
        job = json.loads(_read_all(4))
        os.close(4)
        confine_worker(job)
        code = worker_main(job, job["worker"])
        try:
            sys.stdout.flush()
        except BaseException:
            code = code or 1
    except MemoryError:
        write_record({"ev": "exception", "exc": "MemoryError", "msg": "MemoryError"})
        code = 1
    except BaseException:
        traceback.print_exc()
    os._exit(code)


def _zygote(sock, supervisor):
    """Fork workers on request; never reads a job (its heap stays that of start-up)."""
    set_parent_death_signal(signal.SIGKILL)
    null = os.open("/dev/null", os.O_RDWR)
    for target in (0, 1):  # the supervisor's job and report pipes
        os.dup2(null, target)
    os.close(null)
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 16, 8)
        if not msg:
            os._exit(0)
        pid_r, pid_w = os.pipe()
        middle = os.fork()
        if middle == 0:
            os.close(pid_r)
            pid = os.fork()
            if pid == 0:
                os.close(pid_w)
                sock.close()
                _become_worker(fds, supervisor)
            os.write(pid_w, str(pid).encode())
            os._exit(0)
        os.close(pid_w)
        pid = _read_all(pid_r)
        os.close(pid_r)
        os.waitpid(middle, 0)  # the worker is the supervisor's child from here on
        for fd in fds:
            os.close(fd)
        sock.send(pid)


def _start_zygote():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    supervisor = os.getpid()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            _zygote(theirs, supervisor)
        finally:
            os._exit(0)
    theirs.close()
    _ZYGOTE.update(pid=pid, sock=ours)


def _emit_raw(result, memfd, cap):
    """Emit a report whose records follow as raw bytes, copied by the kernel."""
    size = min(os.fstat(memfd).st_size, cap)
    result["raw"] = size
    _emit(result)
    offset = 0
    while offset < size:
        offset += os.sendfile(1, memfd, offset, size - offset)
    os.close(memfd)


def _children():
    me, kids = os.getpid(), []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == me and int(name) != _ZYGOTE.get("pid"):
                kids.append(int(name))
    return kids


def _collect_zombies():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _reap(box):
    """Kill every leftover process of the run (background jobs, escaped groups).

    With a worker uid, ``kill(-1)`` as that uid reaches all of them. The supervisor is
    also a child subreaper, so orphans land on it and are killed and collected here.
    """
    uid = box["uid"]
    if uid:
        pid = os.fork()
        if pid == 0:
            try:
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    for _ in range(100):
        kids = _children()
        if not kids:
            break
        for kid in kids:
            with contextlib.suppress(OSError):
                os.kill(kid, signal.SIGKILL)
        time.sleep(0.001)
        _collect_zombies()
    _collect_zombies()


def _emit(obj):
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _clear_dir(path, keep_dir=True):
    """Delete everything under ``path`` (as root, after the run's processes are dead)."""
    if not os.path.isdir(path):
        return
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            _clear_dir(entry.path, keep_dir=False)
        else:
            os.unlink(entry.path)
    if not keep_dir:
        os.rmdir(path)


def _prepare_workdir(box):
    work = box["workdir"]
    os.makedirs(work, mode=0o700, exist_ok=True)
    if box["uid"] is not None:
        os.chown(work, box["uid"], box["uid"])


def run_job(job):
    """Run every worker of one job and emit their reports."""
    box = job["box"]
    _prepare_workdir(box)
    try:
        if job.get("ref_exprs"):
            _emit_raw(*_spawn(job, "ref", 0), box["records_cap"])
        if job["kind"] == "stdio":
            for case in range(len(job["stdin"])):
                result, _ = _spawn(job, "stdio", case)
                _emit(result)
                if result["status"] == "timeout" and box["stop_after_timeout"]:
                    break
        else:
            _emit(_spawn(job, "func", 0)[0])
    finally:
        _reap(box)
        for path in box["scrub"]:
            _clear_dir(path)


def main():
    """Serve jobs, one JSON line each, until stdin closes (one job for a cold sandbox)."""
    set_parent_death_signal(signal.SIGKILL)
    set_child_subreaper()
    set_not_dumpable()  # its heap has held every job: no worker may read it
    sys.path.extend(json.loads(sys.argv[1]) if len(sys.argv) > 1 else [])
    # Started with -S for speed; keep the two builtins that ``site`` adds and programs use.
    import _sitebuiltins

    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
    if hasattr(sys, "set_int_max_str_digits"):  # Python >= 3.10.7
        sys.set_int_max_str_digits(0)
    for name in _PREIMPORT.split():
        __import__(name)
    _start_zygote()
    _emit({"ev": "ready", "pid": os.getpid()})
    for line in sys.stdin.buffer:
        if line.strip():
            run_job(json.loads(line))
        _emit({"ev": "end"})


if __name__ == "__main__":
    main()
