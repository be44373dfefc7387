"""Parent-side grading: decode the values a run reported and compare them.

Values are compared by exact type after decoding the sandbox's tagged JSON into
plain builtins, so no object of the candidate's can take part in the comparison
(an ``__eq__`` that always returns True never runs here). One exception: ``int``
and ``float`` compare by value, as ``==`` does, because test literals often write
``2`` for ``2.0``; requiring the same type fails 17 of the 2,363 reference
solutions in ``tests/fixtures/code``.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from verifiers import _template
from verifiers._asserts import Check

FAILURE_CLASSES = (
    "syntax_error",
    "runtime_error",
    "wrong_answer",
    "timeout",
    "memory_limit",
    "output_limit",
)


@dataclass(frozen=True)
class Linked:
    """A decoded ``ListNode`` chain."""

    values: tuple


@dataclass(frozen=True)
class Tree:
    """A decoded ``TreeNode``."""

    val: Any
    left: Any
    right: Any


def decode(obj: Any) -> Any:
    """Turn the harness's tagged JSON back into Python values (raises ValueError)."""
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if type(obj) is list:
        return [decode(v) for v in obj]
    if type(obj) is not dict or len(obj) != 1:
        raise ValueError("malformed value record")
    ((tag, body),) = obj.items()
    try:
        if tag == "t":
            return tuple(decode(v) for v in body)
        if tag == "d":
            return {decode(k): decode(v) for k, v in body}
        if tag in ("s", "fs"):
            return (set if tag == "s" else frozenset)(decode(v) for v in body)
        if tag == "by":
            return base64.b64decode(body)
        if tag == "ih":
            return int(body, 16)
        if tag == "fl":
            return float(body)
        if tag == "c":
            parts = [decode(v) for v in body]
            if len(parts) != 2 or not all(type(v) is float for v in parts):
                raise ValueError("malformed complex")
            return complex(*parts)
        if tag == "L":
            return Linked(tuple(decode(v) for v in body))
        if tag == "T":
            return Tree(decode(body[0]), decode(body[1]), decode(body[2]))
    except (TypeError, IndexError, AttributeError, OverflowError) as exc:
        raise ValueError(f"malformed value record: {exc}") from exc
    raise ValueError(f"unknown value tag {tag!r}")


def values_equal(got: Any, expected: Any, tol: float | None = None) -> bool:
    """Exact-type equality on decoded values; ``tol`` loosens float comparison."""
    tg, te = type(got), type(expected)
    if tg in (int, float) and te in (int, float):
        if tol is not None and float in (tg, te):
            return math.isclose(got, expected, rel_tol=tol, abs_tol=tol)
        return got == expected
    if tg is not te:
        return False
    if tg in (list, tuple):
        return len(got) == len(expected) and all(
            values_equal(a, b, tol) for a, b in zip(got, expected, strict=True)
        )
    if tg is dict:
        return got.keys() == expected.keys() and all(
            values_equal(got[k], expected[k], tol) for k in got
        )
    if tg is Linked:
        return values_equal(got.values, expected.values, tol)
    if tg is Tree:
        return all(
            values_equal(getattr(got, f), getattr(expected, f), tol)
            for f in ("val", "left", "right")
        )
    return bool(got == expected)


def json_normalise(value: Any) -> Any:
    """Tuples become lists, as in JSON test files (APPS call-based outputs)."""
    if type(value) in (list, tuple):
        return [json_normalise(v) for v in value]
    if type(value) is dict:
        return {k: json_normalise(v) for k, v in value.items()}
    return value


def call_output_equal(got: Any, expected: Any, tol: float | None) -> bool:
    """APPS rule: equal after JSON normalisation, or equal to a one-element list's item."""
    got = json_normalise(got)
    if values_equal(got, expected, tol):
        return True
    return type(expected) is list and len(expected) == 1 and values_equal(got, expected[0], tol)


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def stdout_equal(got: str, expected: str, tol: float | None) -> bool:
    """Token-by-token comparison; with ``tol``, numeric tokens may differ by ``tol``."""
    a, b = got.split(), expected.split()
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x == y:
            continue
        if tol is None or not (_is_float(x) and _is_float(y)):
            return False
        if not math.isclose(float(x), float(y), rel_tol=tol, abs_tol=tol):
            return False
    return True


_RECORD_HEAD = re.compile(r'\{"t": (\d{1,9}), "k": "(\w)"')


def parse_records(text: str) -> tuple[list[dict], dict[int, list[dict]]]:
    """Split a worker's record stream into events and per-test value records.

    A value nested deeper than the JSON decoder allows is kept as a record marked
    ``deep`` (its test becomes unverifiable, not the whole batch's error).
    """
    events: list[dict] = []
    tests: dict[int, list[dict]] = {}
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except RecursionError:
            head = _RECORD_HEAD.match(line)
            if head:
                rec = {"t": int(head[1]), "k": head[2], "deep": True}
            else:
                continue
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        if "ev" in rec:
            events.append(rec)
        elif type(rec.get("t")) is int:
            tests.setdefault(rec["t"], []).append(rec)
    return events, tests


@dataclass(frozen=True)
class Outcome:
    """Result of one test."""

    ok: bool
    failure: str | None = None
    """One of :data:`FAILURE_CLASSES`, or ``unverifiable``, when ``ok`` is False."""
    message: str = ""
    got: Any = None
    expected: Any = None
    forgeable: bool = False
    wall_timeout: bool = False
    """Killed at the wall-clock limit (or not run after such a kill): on a busy
    machine this says nothing about the program, so it is retried."""
    cpu_s: float = 0.0
    """CPU seconds the worker used (for calibrated limits)."""
    wall_s: float = 0.0
    """Wall seconds the worker ran (with ``cpu_s``: the CPU share it got)."""


def _waited(worker: dict) -> bool:
    """The program spent most of its time neither running nor ready to run (sleeping,
    blocked): a timeout that a busy machine did not cause."""
    return worker.get("runnable_s", worker["wall_s"]) < 0.5 * worker["wall_s"]


def _cpu_bound(worker: dict, cpu_limit: float) -> bool:
    """The run's processes together used (nearly: RLIMIT_CPU would have fired within
    moments) more CPU than one may, e.g. a fork-and-spin."""
    return max(worker.get("run_cpu_s", 0.0), worker["cpu_s"]) >= 0.9 * cpu_limit


def failure_outcome(
    worker: dict | None, events: list[dict], cpu_limit: float, got: Any = None, expected: Any = None
) -> Outcome:
    """The outcome of a test whose worker did not report a value for it."""
    cls, msg = worker_failure(worker, events, cpu_limit)
    wall = worker is None or (
        worker["status"] == "timeout" and not _waited(worker) and not _cpu_bound(worker, cpu_limit)
    )
    cpu, run = (worker["cpu_s"], worker["wall_s"]) if worker else (0.0, 0.0)
    return Outcome(False, cls, msg, got, expected, wall_timeout=wall, cpu_s=cpu, wall_s=run)


_SIGNALS = {6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 24: "SIGXCPU", 25: "SIGXFSZ"}


def worker_failure(worker: dict | None, events: list[dict], cpu_limit: float) -> tuple[str, str]:
    """Classify why a worker did not produce a (complete) result."""
    if worker is None:
        return "timeout", "not run: an earlier case timed out"
    if worker["status"] == "timeout" and _cpu_bound(worker, cpu_limit):
        return "timeout", (
            f"the run's processes used {worker['run_cpu_s']:.1f}s of CPU together "
            f"(the limit is {cpu_limit:g}s)"
        )
    if worker["status"] == "timeout" and _waited(worker):
        return "timeout", (
            f"wall-clock limit exceeded after {worker['wall_s']:.1f}s while the program "
            f"waited (at most {worker['runnable_s']:.2f}s running or ready to run)"
        )
    if worker["status"] == "timeout":
        return "timeout", f"wall-clock limit exceeded after {worker['wall_s']:.1f}s"
    if worker["status"] == "output_limit":
        what = "the reported values" if worker.get("records_truncated") else "stdout"
        return "output_limit", f"{what} exceeded the capture limit"
    if worker["status"] == "memory_limit":
        return "memory_limit", "the run's processes together exceeded the memory limit"
    if worker.get("records_truncated"):
        return "output_limit", "the reported values exceeded the capture limit"
    for ev in events:
        if ev.get("ev") == "syntax_error":
            return "syntax_error", str(ev.get("msg", ""))
    for ev in events:
        if ev.get("ev") == "exception":
            cls = "memory_limit" if ev.get("exc") == "MemoryError" else "runtime_error"
            return cls, str(ev.get("msg", ""))
    code = worker["exit_code"]
    if code < 0:
        name = _SIGNALS.get(-code, f"signal {-code}")
        if -code == 24 or (-code == 9 and worker["cpu_s"] >= cpu_limit - 0.5):
            return "timeout", f"CPU limit exceeded ({name})"
        return "runtime_error", f"killed by {name}"
    tail = worker.get("stderr", "").strip().splitlines()[-1:] or [""]
    if code != 0:
        return "runtime_error", f"exit status {code}: {tail[0]}"
    return "runtime_error", "the program stopped before this test ran"


def _record_error(rec: dict) -> Outcome:
    cls = "memory_limit" if rec.get("exc") == "MemoryError" else "runtime_error"
    return Outcome(False, cls, str(rec.get("err", "")))


def grade_function_tests(
    checks: list[Check],
    worker: dict | None,
    ref_worker: dict | None,
    tol: float | None,
    cpu_limit: float,
) -> list[Outcome]:
    """Grade function-style tests from the ``func`` (and ``ref``) worker reports.

    Args:
        checks: Per test, its :class:`~verifiers._asserts.Check` (mode ``call`` for an
            APPS-style case, whose ``expected`` is the case's output).
        worker: The candidate worker's report.
        ref_worker: The reference worker's report, if one ran.
        tol: Float tolerance, or None for exact comparison.
        cpu_limit: The CPU rlimit, to tell CPU kills from other SIGKILLs.
    """
    events, recs = parse_records(worker["records"]) if worker else ([], {})
    refs = parse_records(ref_worker["records"])[1] if ref_worker else {}
    outcomes = []
    for i, check in enumerate(checks):
        rs = recs.get(i, [])
        if not rs:
            outcomes.append(failure_outcome(worker, events, cpu_limit))
            continue
        try:
            outcomes.append(_grade_one(check, rs, refs.get(i, []), tol))
        except (RecursionError, MemoryError) as exc:
            why = "nested too deep" if isinstance(exc, RecursionError) else "too large"
            outcomes.append(Outcome(False, "unverifiable", f"value {why} to compare here"))
    return outcomes


def _expected_values(check: Check, rs: list[dict], ref: list[dict]) -> list[Any]:
    """Expected value per reported value (one each, more when an assert ran in a loop).

    Raises:
        LookupError: A ``ref`` expectation could not be computed (unverifiable).
        ValueError: A record is malformed.
    """
    n = sum(r.get("k") in ("v", "w") for r in rs)
    if check.mode == "ref":
        ok = [r for r in ref if "err" not in r and r.get("k") == "v"]
        if not ok or ok[0].get("deep"):
            why = next((r["err"] for r in ref if "err" in r), "the ref worker reported nothing")
            why = "it is nested too deep to decode" if ok else why
            raise LookupError(f"expected value could not be computed: {why}")
        return [decode(ok[0]["v"])] * n
    if check.mode == "pair":
        rhs = [decode(r.get("v")) for r in rs if r.get("k") == "r"]
        return rhs + [_MISSING] * (n - len(rhs))
    return [check.expected] * n


_MISSING = object()


def _matches(check: Check, value: Any, want: Any, tol: float | None, pre: bool = False) -> bool:
    """Apply the test to one reported value (raises what the assert would raise)."""
    if check.mode == "call":
        return call_output_equal(value, want, tol)
    if check.mode == "opaque":
        return bool(value)
    if check.mode == "expr":
        if type(value) is not tuple:
            raise TypeError("the reported holes are not a tuple")
        assert check.template is not None
        equal = lambda a, b: values_equal(a, b, tol)  # noqa: E731
        return bool(_template.evaluate(check.template, list(value), equal))
    for name in () if pre else reversed(check.wrap):  # ``pre``: wrapped in the worker
        value = _template.WRAPPERS[name](value)
    return want is not _MISSING and values_equal(value, want, tol)


def _grade_one(check: Check, rs: list[dict], ref: list[dict], tol: float | None) -> Outcome:
    forgeable = check.forgeable
    errors = [r for r in rs if "err" in r]
    if errors:
        return _record_error(errors[0])
    if any(r.get("deep") for r in rs):
        return Outcome(False, "unverifiable", "the value is nested too deep to decode")
    try:
        got = [decode(r.get("v")) for r in rs if r.get("k") in ("v", "w")]
        wrapped = [r.get("k") == "w" for r in rs if r.get("k") in ("v", "w")]
        wants = _expected_values(check, rs, ref)
    except ValueError as exc:
        return Outcome(False, "runtime_error", f"unreadable result: {exc}")
    except LookupError as exc:
        return Outcome(False, "unverifiable", str(exc))
    if not got:
        return Outcome(False, "runtime_error", "no value reported")
    for value, want, pre in zip(got, wants, wrapped, strict=True):
        try:
            ok = _matches(check, value, want, tol, pre)
        except (RecursionError, MemoryError):
            raise
        except ValueError as exc:
            if "integer string conversion" not in str(exc):
                return Outcome(False, "wrong_answer", _error(exc), value, want, forgeable)
            # str() of a huge int: the sandbox lifts this limit, the parent does not.
            return Outcome(False, "unverifiable", _error(exc), value, want, forgeable)
        except Exception as exc:  # the assert itself raised on the program's value
            return Outcome(False, "wrong_answer", _error(exc), value, want, forgeable)
        if not ok:
            why = f"assert {check.source} failed" if check.mode in ("expr", "opaque") else ""
            return Outcome(False, "wrong_answer", why, value, want, forgeable)
    return Outcome(True, forgeable=forgeable)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def grade_stdio_case(
    worker: dict | None, expected: str, tol: float | None, cpu_limit: float
) -> Outcome:
    """Grade one stdin/stdout case from its worker report."""
    if worker is not None and worker["status"] == "exited" and worker["exit_code"] == 0:
        if stdout_equal(worker["stdout"], expected, tol):
            return Outcome(True)
        return Outcome(False, "wrong_answer", "", worker["stdout"], expected)
    events = parse_records(worker["records"])[0] if worker else []
    got = worker["stdout"] if worker else None
    return failure_outcome(worker, events, cpu_limit, got, expected)
