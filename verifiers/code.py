"""Verify candidate programs against tests in the sandbox (:mod:`verifiers.sandbox`).

Test spec format
----------------
A :class:`TestSpec` (or the equivalent JSON-able dict, see :meth:`TestSpec.from_dict`)
has a ``kind`` and the fields that kind uses:

``kind="assert"`` (HumanEval / LeetCode / MBPP)
    The sandbox runs ``setup``, then the candidate's code, then ``test_code`` in one
    namespace. Every ``assert`` statement in ``test_code`` is one test and must run at
    least once. LeetCode: ``setup=LEETCODE_PREAMBLE`` and ``test_code = test +
    "\\ncheck(<entry_point>)\\n"`` (:meth:`TestSpec.leetcode`). MBPP: ``setup =
    test_setup_code`` and ``test_code = "\\n".join(test_list)`` (:meth:`TestSpec.mbpp`).

``kind="call"`` (APPS ``fn_name``)
    ``fn_name`` names a function, or a method of ``class Solution``; each case calls it
    with ``*case.input`` (a JSON list). Passes when the return value equals
    ``case.output`` after tuples become lists, or equals the single item of a
    one-element list (APPS stores ``False`` as ``[false]``).

``kind="stdio"`` (CodeNet, APPS, Codeforces)
    Each case runs the program as ``__main__`` in its own process with ``case.input``
    on stdin; stdout must match ``case.output`` token by token (whitespace-separated).

``float_tolerance`` (any kind): ``None`` for exact comparison, or a positive float
used as both absolute and relative tolerance for floats / numeric tokens.

Example dicts::

    {"kind": "assert", "setup": "", "test_code": "assert add(1, 2) == 3"}
    {"kind": "call", "fn_name": "add", "cases": [{"input": [1, 2], "output": 3}]}
    {"kind": "stdio", "cases": [{"input": "1 2\\n", "output": "3\\n"}],
     "float_tolerance": 1e-6}

Verdicts
--------
``passed`` is True when every test passed, False when one failed, and None when
the run could not be judged (no tests, sandbox refused or broken). ``details``
holds ``tests`` (per test: True, False, or None when its expected value could not
be computed), ``failure`` (one of ``syntax_error``, ``runtime_error``,
``wrong_answer``, ``timeout``, ``memory_limit``, ``output_limit``, ``no_answer`` (no
code block; ``error`` is then ``no_answer`` too, the outcome every verifier uses), or
``unverifiable``), ``first_failure`` (test, input, expected, got, error; truncated),
``isolation``, ``wall_s``, ``retried_timeout_s`` when a wall-clock timeout was
retried, and, when non-zero, ``forgeable_tests`` (see :mod:`verifiers._asserts`): a
pass that rests on a forgeable test is ``passed=None`` with ``failure="unverifiable"``.

Timeouts are never a verdict about a busy machine: a run that hits the wall-clock
limit is retried once with more room (``timeout_retry_factor``), and a timeout
that persists is ``unverifiable``, except when the program spent (90% of) its CPU
limit, spent most of the time neither running nor waiting for a CPU (sleeping), or
used more CPU than ``calibration_factor`` times ``TestSpec.reference``'s. Any error
while decoding or grading one program's results is that program's verdict.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from verifiers import _runs
from verifiers.sandbox import Sandbox, SandboxConfig, SandboxError, SandboxRefused, get_sandbox
from verifiers.types import NO_ANSWER, Verdict, answer_part

logger = logging.getLogger(__name__)

VERSION = "1"
KINDS = ("assert", "call", "stdio")

LEETCODE_PREAMBLE = """\
import builtins, bisect, collections, functools, heapq, itertools, math, operator, re, string, sys
from typing import *
from collections import *
from heapq import *
from bisect import *
from itertools import *
from functools import *
from math import *
from string import *
from operator import add, and_, attrgetter, itemgetter, mul, or_, sub, xor
import datetime
pow = builtins.pow
inf = float("inf")
sys.setrecursionlimit(100000)

class ListNode:
    def __init__(self, val=0, next=None):
        self.val = val
        self.next = next

class TreeNode:
    def __init__(self, val=0, left=None, right=None):
        self.val = val
        self.left = left
        self.right = right

def list_node(values):
    head = cur = ListNode()
    for v in values:
        cur.next = ListNode(v)
        cur = cur.next
    return head.next

def is_same_list(a, b):
    while a is not None and b is not None:
        if a.val != b.val:
            return False
        a, b = a.next, b.next
    return a is None and b is None

def tree_node(values):  # level order, None = missing child
    if not values or values[0] is None:
        return None
    root = TreeNode(values[0])
    queue = deque([root])
    i = 1
    while queue and i < len(values):
        node = queue.popleft()
        if i < len(values) and values[i] is not None:
            node.left = TreeNode(values[i])
            queue.append(node.left)
        i += 1
        if i < len(values) and values[i] is not None:
            node.right = TreeNode(values[i])
            queue.append(node.right)
        i += 1
    return root

def is_same_tree(a, b):
    if a is None or b is None:
        return a is b
    return a.val == b.val and is_same_tree(a.left, b.left) and is_same_tree(a.right, b.right)
"""
"""The LeetCode preamble from ``shared/data/README.md`` (helpers and star imports)."""


APPS_PREAMBLE = """\
import sys
import time
import itertools
from itertools import accumulate, product, permutations, combinations
import collections
from collections import Counter, OrderedDict, deque, defaultdict, ChainMap
from functools import lru_cache
import math
from math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2
import fractions
from typing import List, Tuple
import random
import heapq
from heapq import *
"""
"""The import header APPS's ``testing_util.py`` puts before call-based solutions
(starter code uses ``List[int]``), minus ``import numpy as np`` (slow to import)."""


@dataclass(frozen=True)
class TestCase:
    """One input/expected-output pair of a ``call`` or ``stdio`` spec."""

    __test__ = False  # not a pytest class

    input: Any
    """``call``: list of positional arguments (JSON data); ``stdio``: stdin text."""
    output: Any
    """``call``: expected return value; ``stdio``: expected stdout text."""


@dataclass(frozen=True)
class TestSpec:
    """Tests for one problem; the format is described in the module docstring."""

    __test__ = False  # not a pytest class

    kind: str
    """``assert``, ``call`` or ``stdio``."""
    setup: str = ""
    """Code run before the candidate's code, in the same namespace."""
    test_code: str = ""
    """``assert`` only: code run after the candidate's; each assert is one test."""
    fn_name: str | None = None
    """``call`` only: function (or ``Solution`` method) to call."""
    cases: tuple[TestCase, ...] = ()
    """``call`` and ``stdio``: the cases, in order."""
    float_tolerance: float | None = None
    """Absolute and relative tolerance for floats; None compares exactly."""
    reference: str | None = None
    """A reference solution. When set, its measured CPU time per test times
    ``CodeVerifierConfig.calibration_factor`` tells a slow candidate (``timeout``)
    from a busy machine (``unverifiable``) after a repeated wall-clock timeout."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"TestSpec.kind must be one of {KINDS}, got {self.kind!r}")
        tol = self.float_tolerance
        if tol is not None and (
            isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0
        ):
            raise ValueError(
                f"TestSpec.float_tolerance must be None or a float > 0 (e.g. 1e-6), got {tol!r}"
            )
        if self.kind == "assert" and not self.test_code.strip():
            raise ValueError("TestSpec.test_code is required for kind='assert'")
        if self.kind == "call" and not self.fn_name:
            raise ValueError("TestSpec.fn_name is required for kind='call'")
        if self.kind != "assert" and not self.cases:
            raise ValueError(f"TestSpec.cases must not be empty for kind={self.kind!r}")
        for case in self.cases:
            if not isinstance(case, TestCase):
                raise ValueError(
                    "TestSpec.cases must hold TestCase objects (use TestSpec.from_dict)"
                )
            if self.kind == "call" and not isinstance(case.input, list):
                raise ValueError(
                    "TestSpec.cases[].input must be a list of arguments for kind='call'"
                )
            if self.kind == "stdio" and not (
                isinstance(case.input, str) and isinstance(case.output, str)
            ):
                raise ValueError("TestSpec.cases[].input/output must be strings for kind='stdio'")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestSpec:
        """Build a spec from its JSON form (``cases`` as a list of input/output dicts)."""
        cases = tuple(TestCase(c["input"], c["output"]) for c in data.get("cases", ()))
        return cls(**{**data, "cases": cases})

    @classmethod
    def leetcode(cls, test: str, entry_point: str) -> TestSpec:
        """LeetCode-style: preamble + solution + ``test`` + ``check(entry_point)``."""
        return cls("assert", setup=LEETCODE_PREAMBLE, test_code=f"{test}\ncheck({entry_point})\n")

    @classmethod
    def mbpp(cls, test_list: list[str], test_setup_code: str = "") -> TestSpec:
        """MBPP-style: ``test_setup_code`` + solution + the asserts."""
        return cls("assert", setup=test_setup_code, test_code="\n".join(test_list))

    @classmethod
    def calls(cls, fn_name: str, inputs: list[list], outputs: list, **kw: Any) -> TestSpec:
        """Call-based cases (APPS ``fn_name``)."""
        return cls("call", fn_name=fn_name, cases=tuple(map(TestCase, inputs, outputs)), **kw)

    @classmethod
    def stdio(
        cls, inputs: list[str], outputs: list[str], float_tolerance: float | None = None
    ) -> TestSpec:
        """stdin/stdout cases."""
        cases = tuple(map(TestCase, inputs, outputs))
        return cls("stdio", cases=cases, float_tolerance=float_tolerance)


@dataclass(frozen=True)
class CodeVerifierConfig:
    """Options of :func:`verify_batch`."""

    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Isolation and limits."""
    raise_on_error: bool = False
    """Raise sandbox and spec errors instead of returning ``passed=None`` verdicts."""
    detail_chars: int = 200
    """Truncate input/expected/got/error in ``first_failure`` to this many characters."""
    timeout_retry_factor: float = 3.0
    """A run that hits the wall-clock limit is retried once with at least the limit
    times this; a timeout that persists is ``unverifiable`` unless the CPU limit or a
    calibrated limit applies."""
    timeout_retry_max_factor: float = 12.0
    """The retry's limit is the wall time that the CPU share measured in the first run
    needs to reach ``SandboxConfig.cpu_s`` (so a spinning program meets its CPU
    limit), between ``timeout_retry_factor`` and this, times ``timeout_s``."""
    calibration_factor: float = 10.0
    """With ``TestSpec.reference``: a persisting timeout whose CPU time exceeds this
    times the reference's (+0.5 s) is a ``timeout`` failure."""

    def __post_init__(self) -> None:
        if self.detail_chars < 20:
            raise ValueError(
                f"CodeVerifierConfig.detail_chars must be >= 20, got {self.detail_chars}"
            )
        if self.timeout_retry_max_factor < self.timeout_retry_factor:
            raise ValueError(
                "CodeVerifierConfig.timeout_retry_max_factor must be >= timeout_retry_factor"
            )
        for name in ("timeout_retry_factor", "calibration_factor"):
            if not getattr(self, name) >= 1:
                raise ValueError(
                    f"CodeVerifierConfig.{name} must be >= 1, got {getattr(self, name)}"
                )


_FENCE = re.compile(r"^[ \t]*```[ \t]*(?:python3?|py)\b[^\n]*\n(.*?)^[ \t]*```", re.M | re.S | re.I)


def extract_code(text: str) -> str | None:
    """Return the last fenced Python block outside ``<think>...</think>``, or None.

    Example:
        >>> extract_code("<think>```python\\nx = 0\\n```</think>```python\\nx = 1\\n```")
        'x = 1\\n'
        >>> extract_code("no code here") is None
        True
    """
    blocks = _FENCE.findall(answer_part(text))
    return blocks[-1] if blocks else None


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except ValueError:  # an int beyond sys.get_int_max_str_digits()
        return f"<int of {value.bit_length()} bits>" if type(value) is int else "<unprintable>"
    except RecursionError:
        return "<nested too deep to print>"


def _clip(value: Any, limit: int, text: bool = False) -> str | None:
    if value is None and not text:
        return None
    s = value if isinstance(value, str) and text else _safe_repr(value)
    return s if len(s) <= limit else f"{s[:limit]}...[+{len(s) - limit} chars]"


def _verdict(passed: bool | None, details: dict[str, Any]) -> Verdict:
    score = None if passed is None else float(passed)
    return Verdict(verifier="code", version=VERSION, passed=passed, score=score, details=details)


def _verify_one(code: str | None, spec: TestSpec, box: Sandbox, cfg: CodeVerifierConfig) -> Verdict:
    details: dict[str, Any] = {"isolation": box.isolation.name}
    if not code or not code.strip():
        return _verdict(False, {**details, "failure": NO_ANSWER, "error": NO_ANSWER, "tests": []})
    job, checks, inputs = _runs.build_job(code, spec)
    timeout, limits = box.config.timeout_s, None
    outcomes, wall = _runs.run_graded(job, spec, checks, box, timeout)
    if any(o.wall_timeout for o in outcomes):
        limits = _runs.reference_cpu(spec, box)
        outcomes = _runs.calibrate(outcomes, limits, cfg)
    decided = any(not (o.ok or o.wall_timeout or o.failure == "unverifiable") for o in outcomes)
    if any(o.wall_timeout for o in outcomes) and not decided:
        # Under load a correct program can miss a wall-clock limit: retry with more room.
        timeout = _runs.retry_timeout(outcomes, box.config, cfg)
        details["retried_timeout_s"] = round(timeout, 3)
        outcomes, wall = _runs.run_graded(job, spec, checks, box, timeout)
        outcomes = _runs.calibrate(outcomes, limits, cfg)
    outcomes = _runs.persisting_timeouts(outcomes)
    unknown = [o.failure == "unverifiable" for o in outcomes]
    details["tests"] = [None if u else o.ok for o, u in zip(outcomes, unknown, strict=True)]
    details["wall_s"] = round(wall, 3)
    forgeable = sum(c.forgeable for c in checks)
    if forgeable:
        details["forgeable_tests"] = forgeable
    # A verified failure decides the verdict; otherwise an unverifiable test makes it None.
    failures = [(i, o) for i, o in enumerate(outcomes) if not o.ok]
    failed = min(failures, key=lambda f: (unknown[f[0]], f[0]), default=None)
    details["failure"] = failed[1].failure if failed else None
    passed = None if failed and unknown[failed[0]] else failed is None
    if passed and forgeable:
        # The program's own process computed these verdicts; a pass is not evidence.
        passed, details["failure"] = None, "unverifiable"
        details["error"] = f"{forgeable} test(s) are decided inside the candidate's process"
    if failed:
        i, o = failed
        n, as_text = cfg.detail_chars, spec.kind == "stdio"
        details["first_failure"] = {
            "test": i,
            "input": _clip(inputs[i], n, text=as_text or spec.kind == "assert"),
            "expected": _clip(o.expected, n, text=as_text),
            "got": _clip(o.got, n, text=as_text),
            "error": _clip(o.message, n, text=True) or None,
        }
    return _verdict(passed, details)


def verify_batch(
    codes: list[str | None],
    test_specs: list[TestSpec | dict[str, Any]],
    config: CodeVerifierConfig | None = None,
) -> list[Verdict]:
    """Verify many programs concurrently (one sandbox slot per core); same order as input.

    Args:
        codes: Candidate programs (None or empty means the response had no code).
        test_specs: One :class:`TestSpec` (or its dict form) per program.
        config: Options; defaults to :class:`CodeVerifierConfig`.

    Returns:
        One :class:`Verdict` per program.

    Raises:
        ValueError: ``codes`` and ``test_specs`` differ in length.
    """
    cfg = config or CodeVerifierConfig()
    if len(codes) != len(test_specs):
        raise ValueError(f"verify_batch got {len(codes)} codes but {len(test_specs)} test specs")
    try:
        box = get_sandbox(cfg.sandbox)
        box.check_allowed()
    except (SandboxError, SandboxRefused) as exc:
        if cfg.raise_on_error:
            raise
        logger.error("code verification unavailable: %s", exc)
        error = f"{type(exc).__name__}: {exc}"
        return [_verdict(None, {"error": error}) for _ in codes]

    def one(code: str | None, spec: TestSpec | dict[str, Any]) -> Verdict:
        try:
            spec = spec if isinstance(spec, TestSpec) else TestSpec.from_dict(spec)
            return _verify_one(code, spec, box, cfg)
        except (SandboxRefused, SandboxError, ValueError, TypeError, KeyError) as exc:
            if cfg.raise_on_error:
                raise
            logger.warning("code verification unverifiable: %s", exc)
            return _verdict(
                None, {"isolation": box.isolation.name, "error": f"{type(exc).__name__}: {exc}"}
            )
        except Exception as exc:  # one program's results must never stop the batch
            if cfg.raise_on_error:
                raise
            logger.exception("grading one program failed")
            return _verdict(
                None, {"isolation": box.isolation.name, "error": f"{type(exc).__name__}: {exc}"}
            )

    return list(box.pool.map(one, codes, test_specs))


def verify(
    code: str | None, spec: TestSpec | dict[str, Any], config: CodeVerifierConfig | None = None
) -> Verdict:
    """Verify one program; see :func:`verify_batch`."""
    return verify_batch([code], [spec], config)[0]
