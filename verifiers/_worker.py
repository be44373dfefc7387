"""Worker side of the sandbox harness: runs candidate code and reports values.

Stdlib only; pasted between ``_confine.py`` and ``_harness.py`` into the script that
runs inside the sandbox (see :mod:`verifiers._harness`). A worker is forked from the
supervisor's zygote, reads its own part of the job, is confined by
:func:`confine_worker`, then runs :func:`worker_main`.

Values are reported on fd 3 as JSON lines ``{"t": test, "k": "v"|"r", "v": value}``
(or ``"err"``), with values in a tagged encoding that keeps exact builtin types apart
(:func:`verifiers._grading.decode` reads it). Events (``syntax_error``,
``exception``, ``done``) only classify failures; the candidate can write to fd 3
and rebind ``__dg_rec__`` too, so nothing here is trusted beyond "this is the value
the program produced": the values are of the candidate's own calls only, and every
expected value and predicate is applied in the parent (:mod:`verifiers._asserts`).
"""

import base64
import builtins
import io
import json
import os
import resource
import sys
import traceback
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pasted in front of this file at run time
    from verifiers._confine import apply_landlock, apply_seccomp, set_no_new_privs

RESULT_FD = 3
_MAX_NODES = 1_000_000
_MAX_DEPTH = 10_000


class _Unserializable(Exception):
    pass


def _enc(value, depth=0, budget=None):
    """Encode a value as tagged JSON, keeping exact builtin types apart."""
    budget = budget if budget is not None else [_MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0 or depth > _MAX_DEPTH:
        raise _Unserializable("value too large or too deep")
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        # Beyond ~4000 digits the parent's json.loads refuses decimal ints; use hex.
        return value if value.bit_length() < 13000 else {"ih": hex(value)}
    if t is float:
        return (
            value
            if value == value and value not in (float("inf"), -float("inf"))
            else {"fl": repr(value)}
        )
    if t is list:
        return [_enc(v, depth + 1, budget) for v in value]
    if t is tuple:
        return {"t": [_enc(v, depth + 1, budget) for v in value]}
    if t is dict:
        return {
            "d": [
                [_enc(k, depth + 1, budget), _enc(v, depth + 1, budget)] for k, v in value.items()
            ]
        }
    if t in (set, frozenset):
        return {"s" if t is set else "fs": [_enc(v, depth + 1, budget) for v in value]}
    if t is bytes:
        return {"by": base64.b64encode(value).decode()}
    if t is complex:
        return {"c": [_enc(value.real), _enc(value.imag)]}
    name = t.__name__
    if name == "ListNode" and hasattr(value, "next"):
        vals, node, seen = [], value, 0
        while node is not None:
            seen += 1
            if seen > 100_000:
                raise _Unserializable("linked list too long or cyclic")
            vals.append(_enc(node.val, depth + 1, budget))
            node = node.next
        return {"L": vals}
    if name == "TreeNode" and hasattr(value, "left"):
        return {
            "T": [
                _enc(value.val, depth + 1, budget),
                _enc(value.left, depth + 1, budget),
                _enc(value.right, depth + 1, budget),
            ]
        }
    # Subclasses of builtins (Counter, OrderedDict, IntEnum, numpy.float64) are encoded
    # through the base type's own methods, which a subclass cannot override.
    for base, conv in ((int, int.__int__), (float, float.__float__), (str, str.__str__)):
        if isinstance(value, base):
            return _enc(conv(value), depth, budget)
    for base in (list, tuple, dict, set, frozenset):
        if isinstance(value, base):
            items = dict.items(value) if base is dict else base.__iter__(value)
            return _enc(dict(items) if base is dict else base(items), depth, budget)
    if t.__module__ == "numpy" and hasattr(value, "tolist"):
        return _enc(value.tolist(), depth + 1, budget)
    raise _Unserializable(f"cannot serialise a {t.__module__}.{name}")


def write_record(obj):
    """Write one JSON line to the records channel (fd 3)."""
    data = (json.dumps(obj) + "\n").encode()
    while data:
        data = data[os.write(RESULT_FD, data) :]


def _error_text(exc):
    return f"{type(exc).__name__}: {exc}"[:2000]


def _record_value(index, thunk, key="v"):
    try:
        value = thunk()
    except BaseException as exc:
        write_record({"t": index, "k": key, "err": _error_text(exc), "exc": type(exc).__name__})
        return
    try:
        write_record({"t": index, "k": key, "v": _enc(value)})
    except (_Unserializable, RecursionError, ValueError) as exc:
        write_record(
            {"t": index, "k": key, "err": f"unserialisable result: {exc}"[:500], "exc": "TypeError"}
        )


def _record_wrapped(index, thunk, wrap):
    """Record ``thunk()``; if it cannot be encoded (a generator), ``wrap`` of it as "w"."""
    try:
        value = thunk()
    except BaseException as exc:
        write_record({"t": index, "k": "v", "err": _error_text(exc), "exc": type(exc).__name__})
        return
    try:
        write_record({"t": index, "k": "v", "v": _enc(value)})
    except (_Unserializable, RecursionError, ValueError):
        _record_value(index, lambda: wrap(value), "w")


def _new_main():
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    return module.__dict__


def _fresh_stdio():
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "rb", closefd=False)), encoding="utf-8"
    )
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "wb", closefd=False), 1 << 16), encoding="utf-8"
    )
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.FileIO(2, "wb", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        write_through=True,
    )


def _finish_program():
    """Run what a normal interpreter exit would: join threads, atexit, flush."""
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    import atexit

    atexit._run_exitfuncs()


def _exit_code(exc):
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _run_program(ns, source, filename):
    """Compile and exec ``source`` in ``ns``; returns False after reporting a failure.

    ``SystemExit`` propagates so that the worker exits with the program's status.
    """
    try:
        code = compile(source, filename, "exec")
    except (SyntaxError, ValueError) as exc:
        write_record({"ev": "syntax_error", "msg": _error_text(exc), "file": filename})
        return False
    try:
        exec(code, ns)
    except SystemExit:
        raise
    except BaseException as exc:
        traceback.print_exc()
        write_record(
            {
                "ev": "exception",
                "exc": type(exc).__name__,
                "msg": _error_text(exc),
                "file": filename,
            }
        )
        return False
    return True


def _eval_expected(ns, expr_src):
    """Evaluate an expected-value expression, importing stdlib modules it names."""
    for _ in range(5):
        try:
            return eval(expr_src, ns)  # test data; no candidate code is loaded
        except NameError as exc:
            name = getattr(exc, "name", None)
            if name not in sys.stdlib_module_names or name in ns:
                raise
            ns[name] = __import__(name)
    raise RuntimeError("could not resolve the names in the expected value")


def _resolve_callable(ns, fn_name):
    cls = ns.get("Solution")
    if isinstance(cls, type) and hasattr(cls, fn_name):
        return getattr(cls(), fn_name)
    if fn_name in ns:
        return ns[fn_name]
    raise NameError(f"the program defines no function {fn_name!r}")


def _run_tests(job, ns):
    """Run the function-style tests of ``job`` against the loaded program."""
    if job["kind"] == "call":
        try:
            fn = _resolve_callable(ns, job["fn_name"])
        except Exception as exc:
            write_record({"ev": "exception", "exc": type(exc).__name__, "msg": _error_text(exc)})
            return
        for index, args_json in enumerate(job["inputs"]):
            _record_value(index, lambda a=args_json: fn(*json.loads(a)))
    else:
        _run_program(ns, job["test_code"], "<tests>")


def worker_main(job, kind):
    """Body of a worker process; returns its exit status."""
    _fresh_stdio()
    ns = _new_main()
    if kind == "ref":
        if job.get("setup") and not _run_program(ns, job["setup"], "<setup>"):
            return 1
        for index, expr_src in job["ref_exprs"]:
            _record_value(index, lambda e=expr_src: _eval_expected(ns, e))
        write_record({"ev": "done"})
        return 0
    if kind != "stdio":
        # Function-style tests: ``if __name__ == "__main__":`` demo blocks must not run.
        ns["__name__"] = "solution"
    ns["__dg_rec__"] = _record_value
    ns["__dg_wrec__"] = _record_wrapped
    ns["__dg_pair__"] = lambda i, left, right: (
        _record_value(i, left),
        _record_value(i, right, "r"),
    )
    rc = 0
    try:
        ok = not job.get("setup") or _run_program(ns, job["setup"], "<setup>")
        ok = ok and _run_program(ns, job["code"], "solution.py")
        if ok and kind != "stdio":
            _run_tests(job, ns)
            write_record({"ev": "done"})
        rc = 0 if ok else 1
    except SystemExit as exc:
        rc = _exit_code(exc)
    try:
        _finish_program()
    except SystemExit as exc:
        rc = rc or _exit_code(exc)
    except BaseException:
        traceback.print_exc()
        rc = rc or 1
    return rc


def confine_worker(job):
    """Apply rlimits, Landlock, the unprivileged uid and seccomp, in that order."""
    box = job["box"]
    os.chdir(box["workdir"])
    limits = box["limits"]
    for name, soft, hard in (
        ("RLIMIT_AS", limits["memory"], limits["memory"]),
        ("RLIMIT_CPU", limits["cpu"], limits["cpu"] + 1),
        ("RLIMIT_FSIZE", limits["fsize"], limits["fsize"]),
        ("RLIMIT_NOFILE", limits["nofile"], limits["nofile"]),
        ("RLIMIT_NPROC", limits["nproc"], limits["nproc"]),
        ("RLIMIT_CORE", 0, 0),
    ):
        resource.setrlimit(getattr(resource, name), (soft, hard))
    stack_hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    want = min(limits["stack"], limits["memory"])
    if stack_hard == resource.RLIM_INFINITY or stack_hard >= want:
        resource.setrlimit(resource.RLIMIT_STACK, (want, stack_hard))
    set_no_new_privs()
    if box["landlock"]:
        apply_landlock(box["read_paths"], box["write_paths"], box["landlock"])
    uid = box["uid"]
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    if box["seccomp"]:
        apply_seccomp(box["unix_sockets"])
