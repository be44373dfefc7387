"""Programs that know the verifier's protocol and try to forge a pass.

Each forger is a wrong program (it never solves the task) that uses one channel a
reader of ``verifiers/_worker.py`` and ``_harness.py`` could think of: walking the
stack or the heap to the job's expected values, scanning inherited memory for an
earlier candidate's code, rebinding the record function, writing records to fd 3
itself. None may pass. Each attack also carries a control that shows the channel
is really exercised (the scan finds what *is* in memory, the rebinding takes
effect), so the tests cannot pass by the attack silently not running.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from verifiers.code import CodeVerifierConfig, TestSpec, verify, verify_batch
from verifiers.sandbox import SandboxConfig

ROOT = Path(__file__).resolve().parents[1]
HUMANEVAL = ROOT / "data" / "benchmarks" / "humaneval.jsonl"
CFG = CodeVerifierConfig(SandboxConfig(timeout_s=3.0, cpu_s=3))
# One pool slot: every run goes through the same warm supervisor, one after another.
ONE_SLOT = CodeVerifierConfig(SandboxConfig(timeout_s=3.0, cpu_s=3, workers=1))


def _program(source: str) -> str:
    return textwrap.dedent(source).lstrip("\n")


# Finds any dict that looks like a job (on the stack or among all live objects) and
# evaluates its ``ref`` expressions, which would give the expected values.
FRAME_WALKER = _program("""
    import gc, sys

    def _jobs():
        f = sys._getframe()
        while f is not None:
            for v in list(f.f_locals.values()) + list(f.f_globals.values()):
                if isinstance(v, dict) and "ref_exprs" in v:
                    yield v
            f = f.f_back
        for obj in gc.get_objects():
            if isinstance(obj, dict) and "ref_exprs" in obj:
                yield obj

    def f(x):
        for job in _jobs():
            for index, expr in job["ref_exprs"]:
                if index == x:
                    return eval(expr)
        return "no job found"
""")
REF_SPEC = TestSpec.mbpp(["assert f(0) == set((4, 5))", "assert f(1) == sorted([9, 7])"])


def test_frame_walk_finds_no_expected_values() -> None:
    verdict = verify(FRAME_WALKER, REF_SPEC, CFG)
    assert verdict.passed is False, verdict.details
    assert verdict.details["first_failure"]["got"] == "'no job found'"


# Reads (ctypes) every writable mapping of its own process and looks for ``head + tail``
# (passed in two pieces, so that the whole needle is nowhere in its own job).
HEAP_SCANNER = _program("""
    import ctypes

    def f(head, tail):
        head, tail = head.encode(), tail.encode()
        with open("/proc/self/maps") as maps:
            regions = [line.split()[:2] for line in maps]
        for addr, perms in regions:
            if perms.startswith("rw"):
                start, end = (int(a, 16) for a in addr.split("-"))
                chunk = ctypes.string_at(start, end - start)
                at = chunk.find(head)
                while at >= 0:
                    if chunk[at + len(head) : at + len(head) + len(tail)] == tail:
                        return True
                    at = chunk.find(head, at + 1)
        return False

    WHOLE = "".join(["CONTROL-", "IN-", "MY-", "HEAP"])  # built at run time
""")
SIBLING = "def solve():\n    return 42  # SIBLING-SOLUTION-7d2e\n"


def test_heap_scan_finds_no_earlier_candidate() -> None:
    """An earlier job's program text is in no memory a later candidate inherits."""
    specs = [
        TestSpec.calls("solve", [[]], [42]),
        TestSpec.calls("f", [["CONTROL-IN-", "MY-HEAP"]], [True]),
        TestSpec.calls("f", [["SIBLING-SOLU", "TION-7d2e"]], [True]),
    ]
    first, control, scan = verify_batch([SIBLING, HEAP_SCANNER, HEAP_SCANNER], specs, ONE_SLOT)
    assert first.passed is True, first.details
    assert control.passed is True, control.details  # the scan sees its own heap
    assert scan.passed is False, scan.details  # ... but not the sibling's code


REBINDER = _program("""
    import builtins, sys

    def f(x):
        return None

    _real = __dg_rec__

    def __dg_rec__(index, thunk):  # record what a pass needs, not the program's value
        _real(index, lambda: (True,) * 4 if index >= 2 else True)

    def __dg_pair__(index, left, right):
        _real(index, right)
        _real(index, right, "r")
""")


def test_rebinding_the_record_function_cannot_forge() -> None:
    spec = TestSpec.mbpp(
        [
            "assert f(1) == True",
            "assert f(2) == [1, 2]",
            "assert not f(3)",
            "assert abs(f(4) - 0.5) < 1e-6",
            "y = 3\nassert f(5) == y",
        ]
    )
    verdict = verify(REBINDER, spec, CFG)
    assert verdict.passed is False, verdict.details
    tests = verdict.details["tests"]
    # The rebinding took effect (test 0 got the True it guessed); the rest failed or,
    # for the pair test, computed in the candidate's process, is not counted as passed.
    assert tests[0] is True and tests[1] is False and tests[3] is False
    pair_only = TestSpec.mbpp(["y = 3\nassert f(5) == y"])
    assert verify(REBINDER, pair_only, CFG).passed is None  # forgeable: never a pass


RAW_WRITER = _program("""
    import json, os

    def f(x):
        return None

    for i in range(4):
        for key, value in (("v", True), ("r", True)):
            os.write(3, (json.dumps({"t": i, "k": key, "v": value}) + "\\n").encode())
    os.write(3, b'{"ev": "done"}\\n')
    os._exit(0)  # before the real test code can record anything
""")


def test_raw_writes_to_the_records_fd_cannot_forge() -> None:
    spec = TestSpec.mbpp(["assert f(1) == True", "assert f(2) == [1, 2]", "assert f(3)"])
    verdict = verify(RAW_WRITER, spec, CFG)
    assert verdict.passed is False, verdict.details
    pair = verify(RAW_WRITER, TestSpec.mbpp(["y = True\nassert f(1) == y"]), CFG)
    assert pair.passed is None and pair.details["forgeable_tests"] == 1


# Everything above at once, aimed at HumanEval's ``check(candidate)`` tests.
FORGER = _program("""
    import gc, json, os, sys

    _real = __dg_rec__

    def _ref_value(index):
        for obj in gc.get_objects():
            if isinstance(obj, dict) and "ref_exprs" in obj:
                for i, expr in obj["ref_exprs"]:
                    if i == index:
                        return eval(expr, dict(obj.get("ns", {})))
        raise LookupError

    def __dg_rec__(index, thunk):
        try:
            value = _ref_value(index)
        except Exception:
            value = True
        _real(index, lambda: value)
        os.write(3, (json.dumps({"t": index, "k": "v", "v": True}) + "\\n").encode())

    def __dg_pair__(index, left, right):
        _real(index, right)
        _real(index, right, "r")

    class _Anything:
        def __call__(self, *a, **k):
            return True
        def __getattr__(self, name):
            return self
        def __eq__(self, other):
            return True
        __hash__ = object.__hash__

    def __getattr__(name):
        return _Anything()
""")


def _humaneval() -> list[dict]:
    if not HUMANEVAL.exists():
        pytest.skip(f"{HUMANEVAL} is not here")
    return [json.loads(line) for line in HUMANEVAL.read_text().splitlines()]


@pytest.mark.slow
def test_protocol_forger_passes_no_humaneval_problem() -> None:
    """The issue's forger passed 9 of 164; each problem's entry point is bound to the
    forger's catch-all object, which answers True to everything."""
    rows = _humaneval()
    codes, specs = [], []
    for row in rows:
        codes.append(FORGER + f"\n{row['entry_point']} = _Anything()\n")
        test = row["test"] + f"\ncheck({row['entry_point']})\n"
        specs.append(TestSpec("assert", test_code=test))
    verdicts = verify_batch(codes, specs, CFG)
    passed = [row["id"] for row, v in zip(rows, verdicts, strict=True) if v.passed is True]
    assert passed == []
    assert len(rows) == 164
    # The canonical solutions still pass where no test is decided in the candidate's process.
    canon = verify_batch([r["problem"] + r["canonical_solution"] for r in rows], specs, CFG)
    for row, v in zip(rows, canon, strict=True):
        assert v.passed is not False, (row["id"], v.details)
    assert sum(v.passed is True for v in canon) >= 150
