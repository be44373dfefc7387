"""Code verifier against the reference data in ``tests/fixtures/code/`` (see its README).

* The reference solutions of ``leetcode_train`` and ``mbpp_train`` pass, except mbpp/927,
  which fails by construction (its setup code uses ``Node`` before the solution defines
  it). By default a fixed fifth of the ~2,360 programs runs (every fifth one, plus
  mbpp/927 and every solution that imports a package): all of them took 136 s of the
  suite on 2 busy cores. ``DATAGEN_TEST_ALL_REFERENCES=1`` runs every one.
* The verdict agrees with every ``passes_tests`` label of ``apps_coderl_labeled``.
* stdin/stdout plumbing and float tolerance on the CodeNet slice.
* Each failure class is produced by a small program.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from verifiers import _asserts, _grading
from verifiers.code import (
    APPS_PREAMBLE,
    LEETCODE_PREAMBLE,
    CodeVerifierConfig,
    TestCase,
    TestSpec,
    extract_code,
    verify,
    verify_batch,
)
from verifiers.sandbox import SandboxConfig

FIXTURES = Path(__file__).parent / "fixtures" / "code"
KNOWN_BROKEN = {"mbpp/927": "test_setup_code uses Node before the solution defines it"}
APPS_LIMITS = CodeVerifierConfig(SandboxConfig(timeout_s=6.0, cpu_s=6))
"""The slowest labelled-passing APPS candidate (apps-train-4184#5 sieves ten million
numbers in pure Python) takes 1.8 s of CPU on an idle core and reached 3 s on a loaded
CI machine, where a 3 s limit failed it: the limits leave it a 3x margin."""
REFERENCE_STRIDE = 1 if os.environ.get("DATAGEN_TEST_ALL_REFERENCES") == "1" else 5


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


@cache
def _sandbox_has(package: str) -> bool:
    probe = subprocess.run([sys.executable, "-I", "-c", f"import {package}"], capture_output=True)
    return probe.returncode == 0


def _reference_cases() -> list[tuple[str, str, TestSpec, bool]]:
    """Every reference solution: id, code, tests, and whether the sample must include it."""
    cases = []
    for row in _rows("leetcode_train.jsonl"):
        if all(_sandbox_has(p) for p in row["requires_packages"]):
            cases.append(
                (
                    row["id"],
                    row["canonical_solution"],
                    TestSpec.leetcode(row["test"], row["entry_point"]),
                    bool(row["requires_packages"]),
                )
            )
    for row in _rows("mbpp_train.jsonl"):
        spec = TestSpec.mbpp(row["test_list"], row["test_setup_code"])
        cases.append((row["id"], row["canonical_solution"], spec, row["id"] in KNOWN_BROKEN))
    return cases


def test_reference_solutions_pass() -> None:
    every = _reference_cases()
    skipped = [r["id"] for r in _rows("leetcode_train.jsonl") if r["requires_packages"]]
    assert len(every) == 1889 + 474 - (0 if _sandbox_has("sortedcontainers") else len(skipped))
    cases = [c for i, c in enumerate(every) if c[3] or i % REFERENCE_STRIDE == 0]
    verdicts = verify_batch([c[1] for c in cases], [c[2] for c in cases])
    failed = {
        cid: v.details
        for (cid, _, _, _), v in zip(cases, verdicts, strict=True)
        if v.passed is not True
    }
    assert set(failed) == set(KNOWN_BROKEN), failed
    assert failed["mbpp/927"]["failure"] == "runtime_error"
    assert all(v.details.get("forgeable_tests", 0) == 0 for v in verdicts)


def test_reference_labels_match_the_data() -> None:
    """The fixture's own ``canonical_passes`` agrees, apart from missing packages."""
    for row in _rows("leetcode_train.jsonl"):
        assert row["canonical_passes"] == (not row["requires_packages"]), row["id"]


def _apps_cases() -> list[tuple[str, str, TestSpec, bool]]:
    cases = []
    for row in _rows("apps_coderl_labeled.jsonl"):
        inputs = [t["input"] for t in row["tests"]]
        outputs = [t["output"] for t in row["tests"]]
        if row["fn_name"]:
            spec = TestSpec.calls(row["fn_name"], inputs, outputs, setup=APPS_PREAMBLE)
        else:
            spec = TestSpec.stdio(inputs, outputs)
        for k, cand in enumerate(row["candidates"]):
            cases.append((f"{row['id']}#{k}", cand["code"], spec, cand["passes_tests"]))
    return cases


def test_apps_labels_agree() -> None:
    cases = _apps_cases()
    verdicts = verify_batch([c[1] for c in cases], [c[2] for c in cases], APPS_LIMITS)
    disagree = {
        cid: v.details
        for (cid, _, _, label), v in zip(cases, verdicts, strict=True)
        if v.passed is not label
    }
    assert disagree == {}
    assert len(cases) == 184


def test_stdio_plumbing_on_codenet_samples() -> None:
    """A lookup table per problem: stdin arrives intact and stdout comes back intact."""
    rows = _rows("codenet_atcoder_stdin.jsonl")
    codes, specs = [], []
    for row in rows:
        table = {t["input"]: t["output"] for t in row["tests"]}
        codes.append(f"import sys\nsys.stdout.write({table!r}[sys.stdin.read()])\n")
        specs.append(
            TestSpec.stdio([t["input"] for t in row["tests"]], [t["output"] for t in row["tests"]])
        )
    assert all(v.passed for v in verify_batch(codes, specs)), "lookup programs must pass"


def _codenet(problem: str, tol: float | None) -> TestSpec:
    row = next(r for r in _rows("codenet_atcoder_stdin.jsonl") if r["id"] == problem)
    return TestSpec.stdio(
        [t["input"] for t in row["tests"]], [t["output"] for t in row["tests"]], tol
    )


@pytest.mark.parametrize(
    ("problem", "code", "tol"),
    [
        ("codenet-p02705", "import math\nprint(2 * math.pi * int(input()))", 1e-2),
        ("codenet-p02731", "L = int(input())\nprint((L / 3) ** 3)", 1e-6),
        ("codenet-p02934", "input()\nprint(1 / sum(1 / int(a) for a in input().split()))", 1e-5),
        ("codenet-p02897", "n = int(open(0).read())\nprint(f'{(n + 1) // 2 / n:.3f}')", 1e-6),
    ],
)
def test_stdio_float_tolerance(problem: str, code: str, tol: float) -> None:
    assert verify(code, _codenet(problem, tol)).passed is True
    exact = verify(code, _codenet(problem, None))
    assert exact.passed is False and exact.details["failure"] == "wrong_answer"


def test_stdout_comparison_rules() -> None:
    assert _grading.stdout_equal("1 2\n3\n", "1 2 3", None)
    assert not _grading.stdout_equal("1 2", "1 2 3", None)
    assert _grading.stdout_equal("0.3333333", "0.333333333333", 1e-6)
    assert not _grading.stdout_equal("0.3334", "0.333333333333", 1e-6)
    assert not _grading.stdout_equal("Yes", "yes", 1e-6)
    assert _grading.stdout_equal("1e3", "1000", 1e-9)


FAILURES = {
    "syntax_error": ("def f(x:\n    return x\n", "print(\n"),
    "runtime_error": ("def f(x):\n    return 1 // 0\n", "raise SystemExit(3)\n"),
    "wrong_answer": ("def f(x):\n    return x + 1\n", "print(int(input()) + 1)\n"),
    "timeout": ("def f(x):\n    while True:\n        pass\n", "while True:\n    pass\n"),
    "memory_limit": ("def f(x):\n    return 'x' * (1 << 40)\n", "s = [0] * (1 << 40)\n"),
    "output_limit": (
        "def f(x):\n    while True:\n        print('y' * 999)\n",
        "while True:\n    print('y' * 999)\n",
    ),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_failure_classes(failure: str) -> None:
    func_code, stdio_code = FAILURES[failure]
    # The CPU limit ends the busy loop (SIGXCPU: a timeout verdict) however loaded the
    # machine is; a 1 s wall limit gave it 0.88 s of CPU under load 16: "busy machine".
    cfg = CodeVerifierConfig(SandboxConfig(timeout_s=10.0, cpu_s=1))
    specs = [
        TestSpec.calls("f", [[1], [2]], [1, 2]),
        TestSpec.stdio(["1\n", "2\n"], ["1\n", "2\n"]),
    ]
    for verdict in verify_batch([func_code, stdio_code], specs, cfg):
        assert verdict.passed is False
        assert verdict.details["failure"] == failure, verdict.details
        assert verdict.details["first_failure"]["test"] == 0


def test_per_test_results_and_first_failure() -> None:
    spec = TestSpec.mbpp(["assert f(1) == 1", "assert f(2) == 5", "assert f(3) == 'x' * 500"])
    verdict = verify(
        "def f(x):\n    return 'x' * 300 if x == 3 else x\n",
        spec,
        CodeVerifierConfig(detail_chars=40),
    )
    assert verdict.details["tests"] == [True, False, False]
    first = verdict.details["first_failure"]
    assert first == {"test": 1, "input": "f(2)", "expected": "5", "got": "2", "error": None}
    third = verify(
        "def f(x):\n    return 0\n",
        TestSpec.mbpp(["assert f(3) == 'x' * 500"]),
        CodeVerifierConfig(detail_chars=40),
    )
    assert third.details["first_failure"]["expected"].endswith("...[+462 chars]")


def test_expected_values_never_enter_the_sandbox() -> None:
    test = (
        "def check(candidate):\n    assert candidate(3) == [1, 2, 3]\n"
        "    assert is_same_tree(candidate(1), tree_node([4, None, 5]))\n"
        "    assert candidate(0) == inf\n    x = 7\n    assert candidate(2) == {x}\n"
        "    assert candidate(0) is None\n"
    )
    sandbox_code, refs, checks = _asserts.plan_asserts(test, LEETCODE_PREAMBLE)
    assert "[1, 2, 3]" not in sandbox_code and "4, None, 5" not in sandbox_code
    assert "inf" not in sandbox_code and "{x}" in sandbox_code
    assert refs == [(1, "tree_node([4, None, 5])"), (2, "inf")]
    assert [c.mode for c in checks] == ["literal", "ref", "ref", "pair", "expr"]
    assert [c.forgeable for c in checks] == [False, False, False, True, False]
    assert checks[0].expected == [1, 2, 3]
    # Without the preamble, tree_node is unknown: the candidate computes both sides.
    assert [c.mode for c in _asserts.plan_asserts(test)[2]][1] == "pair"


def test_expected_value_that_cannot_be_computed_is_unverifiable() -> None:
    spec = TestSpec.mbpp(["assert f(1) == 1", "assert f(2) == math.factorial(-1)"])
    verdict = verify("def f(x):\n    return x\n", spec)
    assert verdict.passed is None and verdict.details["failure"] == "unverifiable"
    assert verdict.details["tests"] == [True, None]
    wrong = verify("def f(x):\n    return 0\n", spec)
    assert wrong.passed is False and wrong.details["failure"] == "wrong_answer"


SPY = """\
import sys
class Solution:
    def reverse(self, head):
        f = sys._getframe(1)
        while f:
            for v in f.f_locals.values():
                code = getattr(v, "__code__", None)
                if code and code.co_name == "<lambda>" and "candidate" not in code.co_freevars:
                    return v()  # the expected side, if it is anywhere on the stack
            f = f.f_back
        return head
"""


def test_stack_inspection_cannot_read_expected_values() -> None:
    """A ref-mode expected value is not in the candidate's process; a pair-mode one is."""
    test = "def check(candidate):\n"
    test += "    assert is_same_list(candidate(list_node([1, 2])), list_node([2, 1]))\n"
    assert verify(SPY, TestSpec.leetcode(test, "Solution().reverse")).passed is False
    local = test.replace("list_node([2, 1]))", "list_node(want))").replace(
        "candidate):\n", "candidate):\n    want = [2, 1]\n"
    )
    forged = verify(SPY, TestSpec.leetcode(local, "Solution().reverse"))
    # The pair-mode test is decided in the candidate's process: never a pass.
    assert forged.passed is None and forged.details["forgeable_tests"] == 1


def test_forgeable_tests_are_counted_and_never_pass() -> None:
    spec = TestSpec.mbpp(["x = f(2)\nassert f(2) == x", "assert f(1) is not None"])
    verdict = verify("def f(x):\n    return x\n", spec)
    assert verdict.passed is None and verdict.details["forgeable_tests"] == 1
    assert verdict.details["tests"] == [True, True]
    assert "candidate's process" in verdict.details["error"]
    wrong = verify("def f(x):\n    return None\n", spec)  # fails the trusted test
    assert wrong.passed is False and wrong.details["first_failure"]["test"] == 1


def test_values_compare_by_type() -> None:
    spec = TestSpec.mbpp(["assert f() == (1, 2)"])
    assert verify("def f():\n    return [1, 2]\n", spec).passed is False  # list is not tuple
    assert verify("def f():\n    return (1.0, 2)\n", spec).passed is True  # 1.0 == 1, as in Python
    assert verify("def f():\n    return (True, 2)\n", spec).passed is False  # bool is not int
    counter = "from collections import Counter\ndef f():\n    return Counter('aab')\n"
    assert verify(counter, TestSpec.mbpp(["assert f() == {'a': 2, 'b': 1}"])).passed is True


def test_leetcode_linked_lists_and_trees() -> None:
    test = "def check(candidate):\n"
    test += "    assert is_same_list(candidate(list_node([1, 2])), list_node([2, 1]))\n"
    spec = TestSpec.leetcode(test, "Solution().reverse")
    good = (
        "class Solution:\n    def reverse(self, head):\n        prev = None\n        while head:\n"
        + ("            head.next, prev, head = prev, head, head.next\n        return prev\n")
    )
    assert verify(good, spec).passed is True
    assert (
        verify("class Solution:\n    def reverse(self, head):\n        return head\n", spec).passed
        is False
    )


def test_stdio_programs_behave_as_scripts() -> None:
    threaded = (
        "import sys, threading\nsys.setrecursionlimit(10**6)\nthreading.stack_size(1 << 26)\n"
        "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
        "def main():\n    print(depth(int(input())))\n"
        "if __name__ == '__main__':\n    threading.Thread(target=main).start()\n"
    )
    spec = TestSpec.stdio(["50000\n"], ["50000\n"])
    assert verify(threaded, spec).passed is True
    assert (
        verify("import sys\nprint(sys.stdin.buffer.read().decode().strip())\nexit()\n", spec).passed
        is True
    )
    atexit_out = "import atexit, sys\natexit.register(lambda: sys.stdout.write('50000\\n'))\n"
    assert verify(atexit_out, spec).passed is True


def test_function_tests_skip_main_blocks() -> None:
    code = "def f(x):\n    return x\nif __name__ == '__main__':\n    print(f(int(input())))\n"
    assert verify(code, TestSpec.calls("f", [[1]], [1])).passed is True


def test_cold_sandbox_gives_the_same_verdicts() -> None:
    cold = CodeVerifierConfig(SandboxConfig(warm=False))
    specs = [TestSpec.calls("f", [[1]], [2]), TestSpec.stdio(["1\n"], ["2\n"])]
    codes = ["def f(x):\n    return x + 1\n", "print(int(input()) + 1)\n"]
    assert [v.passed for v in verify_batch(codes, specs, cold)] == [True, True]


def test_unverifiable_cases_return_none() -> None:
    no_tests = verify("x = 1", {"kind": "assert", "test_code": "x = 2"})
    assert no_tests.passed is None and "no assert" in no_tests.details["error"]
    assert verify(None, TestSpec.calls("f", [[1]], [1])).details["failure"] == "no_answer"


def test_spec_dict_form() -> None:
    spec = TestSpec.from_dict(
        {"kind": "stdio", "cases": [{"input": "1 2\n", "output": "3\n"}], "float_tolerance": 1e-6}
    )
    assert spec.cases == (TestCase("1 2\n", "3\n"),)
    assert verify("print(sum(map(int, input().split())))", spec).passed is True


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "bogus"}, "TestSpec.kind"),
        ({"kind": "call", "cases": (TestCase([1], 1),)}, "TestSpec.fn_name"),
        ({"kind": "stdio"}, "TestSpec.cases"),
        (
            {"kind": "stdio", "cases": (TestCase("1", "1"),), "float_tolerance": True},
            "TestSpec.float_tolerance",
        ),
        ({"kind": "assert"}, "TestSpec.test_code"),
    ],
)
def test_spec_validation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TestSpec(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"isolation": "docker"}, "SandboxConfig.isolation"),
        ({"timeout_s": 0}, "SandboxConfig.timeout_s"),
        ({"memory_bytes": 1 << 20}, "SandboxConfig.memory_bytes"),
        ({"max_processes": True}, "SandboxConfig.max_processes"),
        ({"workers": -1}, "SandboxConfig.workers"),
        ({"uid": 0}, "SandboxConfig.uid"),
    ],
)
def test_config_validation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SandboxConfig(**kwargs)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("```python\nx = 1\n```", "x = 1\n"),
        ("```python\na = 1\n```\ntext\n```py\nb = 2\n```", "b = 2\n"),
        ("<think>\n```python\nbad = 1\n```\n</think>\nanswer", None),
        ("<think>```python\nbad = 1\n```</think>```Python\ngood = 1\n```", "good = 1\n"),
        (
            "reasoning without an opening tag ```python\nbad\n```</think>\n```python\nok\n```",
            "ok\n",
        ),
        ("```python\nx = 1\n```\n<think>\nunfinished ```python\ny = 2\n```", "x = 1\n"),
        ("```\nplain = 1\n```", None),
        ("```python\nunclosed = 1\n", None),
    ],
)
def test_extract_code(text: str, expected: str | None) -> None:
    assert extract_code(text) == expected


def test_asserts_are_decided_in_the_parent() -> None:
    """The candidate reports only its calls; ``not``, ``abs(...) < tol``, ``is``,
    wrappers such as ``tuple(...)`` and ``assert True`` are applied in the parent."""
    spec = TestSpec.mbpp(
        [
            "assert not f(0)",
            "assert abs(f(2.0) - 2.0) < 1e-6",
            "assert f(3) is not None",
            "assert tuple(f([1, 2])) == (1, 2)",
            "assert math.isclose(f(0.5), 0.5, rel_tol=1e-9)",
            "assert True",
        ]
    )
    _, _, checks = _asserts.plan_asserts(spec.test_code)
    assert [c.mode for c in checks] == ["expr", "expr", "expr", "literal", "expr", "expr"]
    assert checks[3].wrap == ("tuple",)
    assert verify("def f(x):\n    return x\n", spec).passed is True
    wrong = verify("def f(x):\n    return 1 if x == 0 else x\n", spec)
    assert wrong.passed is False and wrong.details["tests"][0] is False


def test_builtins_the_program_redefines_are_its_own_calls() -> None:
    """MBPP/126 defines ``sum``: ``assert sum(10, 15) == 6`` calls the program's."""
    code = "def sum(a, b):\n    return a + b\n"
    assert verify(code, TestSpec.mbpp(["assert sum(10, 15) == 25"])).passed is True
    assert verify("x = 1\n", TestSpec.mbpp(["assert sum([1, 2]) == 3"])).passed is True


def test_wrapped_generators_are_reported_wrapped() -> None:
    """``list(f(3))`` where f returns a generator: the worker applies ``list`` itself."""
    spec = TestSpec.mbpp(["assert list(f(3)) == [0, 1, 2]", "assert len(list(f(2))) == 2"])
    assert verify("def f(n):\n    return (i for i in range(n))\n", spec).passed is True
    assert verify("def f(n):\n    return iter([9] * n)\n", spec).details["tests"] == [False, True]
