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
from dataclasses import dataclass
from typing import Any

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
            return complex(decode(body[0]), decode(body[1]))
        if tag == "L":
            return Linked(tuple(decode(v) for v in body))
        if tag == "T":
            return Tree(decode(body[0]), decode(body[1]), decode(body[2]))
    except (TypeError, IndexError, AttributeError) as exc:
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


def parse_records(text: str) -> tuple[list[dict], dict[int, list[dict]]]:
    """Split a worker's record stream into events and per-test value records."""
    events: list[dict] = []
    tests: dict[int, list[dict]] = {}
    for line in text.splitlines():
        try:
            rec = json.loads(line)
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


_SIGNALS = {6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 24: "SIGXCPU", 25: "SIGXFSZ"}


def worker_failure(worker: dict | None, events: list[dict], cpu_limit: float) -> tuple[str, str]:
    """Classify why a worker did not produce a (complete) result."""
    if worker is None:
        return "timeout", "not run: an earlier case timed out"
    if worker["status"] == "timeout":
        return "timeout", f"wall-clock limit exceeded after {worker['wall_s']:.1f}s"
    if worker["status"] == "output_limit":
        return "output_limit", "stdout exceeded the capture limit"
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
    expectations: list[tuple[str, Any]],
    worker: dict | None,
    ref_worker: dict | None,
    tol: float | None,
    cpu_limit: float,
) -> list[Outcome]:
    """Grade function-style tests from the ``func`` (and ``ref``) worker reports.

    Args:
        expectations: Per test, ``(mode, expected)``: mode is a :class:`Check` mode or
            ``"call"`` (APPS-style output comparison).
        worker: The candidate worker's report.
        ref_worker: The reference worker's report, if one ran.
        tol: Float tolerance, or None for exact comparison.
        cpu_limit: The CPU rlimit, to tell CPU kills from other SIGKILLs.
    """
    events, recs = parse_records(worker["records"]) if worker else ([], {})
    refs = parse_records(ref_worker["records"])[1] if ref_worker else {}
    outcomes = []
    for i, (mode, expected) in enumerate(expectations):
        rs = recs.get(i, [])
        if not rs:
            outcomes.append(Outcome(False, *worker_failure(worker, events, cpu_limit)))
            continue
        outcomes.append(_grade_one(mode, expected, rs, refs.get(i, []), tol))
    return outcomes


def _expected_values(mode: str, expected: Any, rs: list[dict], ref: list[dict]) -> list[Any]:
    """Expected value per reported value (one each, more when an assert ran in a loop).

    Raises:
        LookupError: A ``ref`` expectation could not be computed (unverifiable).
        ValueError: A record is malformed.
    """
    n = sum(r.get("k") == "v" for r in rs)
    if mode == "ref":
        ok = [r for r in ref if "err" not in r and r.get("k") == "v"]
        if not ok:
            why = next((r["err"] for r in ref if "err" in r), "the ref worker reported nothing")
            raise LookupError(f"expected value could not be computed: {why}")
        return [decode(ok[0]["v"])] * n
    if mode == "pair":
        rhs = [decode(r.get("v")) for r in rs if r.get("k") == "r"]
        return rhs + [_MISSING] * (n - len(rhs))
    return [True if mode == "truthy" else expected] * n


_MISSING = object()


def _grade_one(
    mode: str, expected: Any, rs: list[dict], ref: list[dict], tol: float | None
) -> Outcome:
    forgeable = mode in ("pair", "truthy")
    errors = [r for r in rs if "err" in r]
    if errors:
        return _record_error(errors[0])
    try:
        got = [decode(r.get("v")) for r in rs if r.get("k") == "v"]
        wants = _expected_values(mode, expected, rs, ref)
    except ValueError as exc:
        return Outcome(False, "runtime_error", f"unreadable result: {exc}")
    except LookupError as exc:
        return Outcome(False, "unverifiable", str(exc))
    if not got:
        return Outcome(False, "runtime_error", "no value reported")
    for value, want in zip(got, wants, strict=True):
        if mode == "call":
            ok = call_output_equal(value, want, tol)
        elif mode == "truthy":
            ok = bool(value)
        else:
            ok = want is not _MISSING and values_equal(value, want, tol)
        if not ok:
            return Outcome(False, "wrong_answer", "", value, want, forgeable)
    return Outcome(True, forgeable=forgeable)


def grade_stdio_case(
    worker: dict | None, expected: str, tol: float | None, cpu_limit: float
) -> Outcome:
    """Grade one stdin/stdout case from its worker report."""
    if worker is not None and worker["status"] == "exited" and worker["exit_code"] == 0:
        if stdout_equal(worker["stdout"], expected, tol):
            return Outcome(True)
        return Outcome(False, "wrong_answer", "", worker["stdout"], expected)
    events = parse_records(worker["records"])[0] if worker else []
    cls, msg = worker_failure(worker, events, cpu_limit)
    return Outcome(False, cls, msg, worker["stdout"] if worker else None, expected)
