"""Rewrite assert-style tests so that expected values stay out of the sandbox.

The candidate's process computes only its own calls and reports their values; the
parent applies everything else of the assert to those values:

* ``literal``: ``assert L == R`` (or ``is_same_list`` / ``is_same_tree``) with ``R`` a
  literal, parsed here with :func:`ast.literal_eval`; it never enters the sandbox.
* ``ref``: ``R`` needs only builtins, stdlib modules and names the setup code
  defines (``set((4, 5))``, ``tree_node([1, 2])``). A separate ``ref`` worker
  computes it without the candidate's code; the candidate's process never sees it.
  In both modes ``L`` is a call of the candidate's, possibly inside pure builtins
  (``tuple(candidate(x))``) that the parent applies (``Check.wrap``).
* ``expr``: any other assert made of the candidate's calls and pure operations
  (``assert not f(1)``, ``assert abs(f(2) - 0.5) < 1e-6``, ``assert True``): the
  candidate reports the calls, the parent evaluates the rest (:mod:`verifiers._template`).
* ``pair``: ``R`` uses the test's own variables or helpers, so the candidate's
  process computes both sides; ``opaque``: any other assert (the candidate's process
  computes the verdict itself).

``pair`` and ``opaque`` tests are *forgeable*: a program that knows this protocol can
report whatever makes them pass. They are counted as ``forgeable_tests``, and a pass
that rests on one is ``unverifiable``, never a pass (:mod:`verifiers.code`).
"""

from __future__ import annotations

import ast
import builtins
import importlib
import re
import sys
import threading
from dataclasses import dataclass
from typing import Any

from verifiers import _template

SAME_HELPERS = ("is_same_list", "is_same_tree")
FORGEABLE_MODES = frozenset(("pair", "opaque"))
# ``from <module> import *`` in setup code is expanded (by importing the module here,
# in the parent) only for these side-effect-free modules; other star imports leave
# their names unknown, so asserts that use them fall back to ``pair`` mode.
_STAR_MODULES = frozenset(
    [
        "array",
        "bisect",
        "cmath",
        "collections",
        "copy",
        "datetime",
        "decimal",
        "fractions",
        "functools",
        "heapq",
        "itertools",
        "math",
        "operator",
        "random",
        "re",
        "statistics",
        "string",
        "typing",
    ]
)


@dataclass(frozen=True)
class Check:
    """One assert statement of an assert-style test."""

    index: int
    source: str
    """Source of the side the candidate computes (shown in failure details)."""
    mode: str
    """``literal``, ``ref``, ``expr``, ``pair`` or ``opaque`` (see the module docstring)."""
    expected: Any = None
    """The literal's value in ``literal`` mode."""
    wrap: tuple[str, ...] = ()
    """``literal`` and ``ref``: builtins (:data:`_template.WRAPPERS`) the parent applies
    to the reported value, innermost last."""
    template: ast.expr | None = None
    """``expr``: the assert with the candidate's calls replaced by holes."""

    @property
    def forgeable(self) -> bool:
        """The candidate's process computes the verdict of this test itself."""
        return self.mode in FORGEABLE_MODES


def _bound_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _free_names(expr: ast.AST) -> set[str]:
    loads = {
        n.id for n in ast.walk(expr) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    return loads - _bound_names(expr)


PARSE_LOCK = threading.Lock()
"""Held around ast.parse/compile of source text in the parent process."""


def _parse(source: str) -> ast.Module:
    """``ast.parse`` one call at a time: CPython 3.11 can raise ``SystemError: AST
    constructor recursion depth mismatch`` when threads of the verifier pool parse
    at once (seen in the full test suite)."""
    with PARSE_LOCK:
        return ast.parse(source)


def _setup_names(setup: str) -> set[str]:
    """Names the setup code defines, including star imports from :data:`_STAR_MODULES`."""
    try:
        tree = _parse(setup)
    except SyntaxError:
        return set()
    names = _bound_names(tree)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0):
            continue
        star = any(a.name == "*" for a in node.names)
        if star and node.module in _STAR_MODULES:
            module = importlib.import_module(node.module)
            names.update(getattr(module, "__all__", None) or dir(module))
    return names - {"*"}


def _call(name: str, *args: ast.expr) -> ast.Expr:
    return ast.Expr(ast.Call(ast.Name(name, ast.Load()), list(args), []))


def _thunk(expr: ast.expr) -> ast.Lambda:
    no_args = ast.arguments([], [], None, [], [], None, [])
    return ast.Lambda(no_args, expr)


def _sides(test: ast.expr) -> tuple[ast.expr, ast.expr] | None:
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        return test.left, test.comparators[0]
    if (
        isinstance(test, ast.Call)
        and isinstance(test.func, ast.Name)
        and test.func.id in SAME_HELPERS
        and len(test.args) == 2
        and not test.keywords
    ):
        return test.args[0], test.args[1]
    return None


def _unwrap(expr: ast.expr, available: set[str]) -> tuple[tuple[str, ...], ast.expr]:
    """Strip one-argument pure builtins around ``expr`` (``tuple(sorted(f(x)))``)."""
    wrap: list[str] = []
    while (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Name)
        and expr.func.id in _template.WRAPPERS
        and expr.func.id in available
        and len(expr.args) == 1
        and not expr.keywords
    ):
        wrap.append(expr.func.id)
        expr = expr.args[0]
    return tuple(wrap), expr


def _wrap_calls(wrap: tuple[str, ...]) -> ast.expr:
    """``w0(w1(...(_dg_v)))`` for the wrapper names, outermost first."""
    expr: ast.expr = ast.Name("_dg_v", ast.Load())
    for name in reversed(wrap):
        expr = ast.Call(ast.Name(name, ast.Load()), [expr], [])
    return expr


_TOP_LEVEL_NAME = re.compile(
    r"^(?:(?:async[ \t]+)?def|class)[ \t]+(\w+)|^(\w+)[ \t]*(?::[^=\n]*)?=(?!=)", re.M
)


def _module_names(code: str) -> set[str]:
    """Names a program defines at module level (a ``def sum`` shadows the builtin;
    an import binds a library's object, not the program's code).

    Read from the text, not parsed: parsing candidate code here would print its
    invalid-escape warnings in the parent.
    """
    return {a or b for a, b in _TOP_LEVEL_NAME.findall(code)}


def plan_asserts(
    test_code: str, setup: str = "", code: str = ""
) -> tuple[str, list[tuple[int, str]], list[Check]]:
    """Rewrite every ``assert`` of ``test_code`` into a value-reporting call.

    Args:
        test_code: Test source, run after the candidate's code.
        setup: Source run before the candidate's code (its names are available to
            the ``ref`` worker).
        code: The candidate's program: builtins it redefines are its own calls.

    Returns:
        ``(sandbox_code, ref_exprs, checks)``: the rewritten source for the
        candidate's process, the ``(index, expression)`` pairs for the ``ref``
        worker, and one :class:`Check` per assert, numbered in source order.

    Raises:
        ValueError: ``test_code`` does not parse or contains no assert.

    Example:
        >>> code, refs, checks = plan_asserts("assert f(1) == [2]")
        >>> code, checks[0].mode, checks[0].expected
        ('__dg_rec__(0, lambda: f(1))', 'literal', [2])
    """
    try:
        tree = _parse(test_code)
    except SyntaxError as exc:
        raise ValueError(f"TestSpec.test_code does not parse: {exc}") from exc
    local = _bound_names(tree)
    available = set(dir(builtins)) | _setup_names(setup) | set(sys.stdlib_module_names)
    available -= _module_names(code)
    checks: list[Check] = []
    refs: list[tuple[int, str]] = []

    helpers = {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }

    def candidate_call(call: ast.Call) -> bool:
        """A call of something the test neither defines nor imports: the candidate's
        (``candidate``, the parameter of HumanEval's ``check``, is one)."""
        free = _free_names(call.func)
        return not free & helpers and bool(free - available or free & local)

    def record(i: int, expr: ast.expr, node: ast.Assert) -> ast.AST:
        return ast.copy_location(_call("__dg_rec__", ast.Constant(i), _thunk(expr)), node)

    def as_template(i: int, node: ast.Assert) -> ast.AST | None:
        try:
            template, holes = _template.split(node.test, candidate_call)
        except (_template.NotATemplate, RecursionError):
            return None
        checks.append(Check(i, ast.unparse(node.test), "expr", template=template))
        return record(i, ast.Tuple(holes, ast.Load()), node)

    class _Rewrite(ast.NodeTransformer):
        def visit_Assert(self, node: ast.Assert) -> ast.AST:
            i, sides = len(checks), _sides(node.test)
            wrap, inner = _unwrap(sides[0], available) if sides else ((), node.test)
            if sides is None or not (isinstance(inner, ast.Call) and candidate_call(inner)):
                new = as_template(i, node)
                if new is not None:
                    return new
            if sides is None:
                checks.append(Check(i, ast.unparse(node.test), "opaque"))
                return record(i, node.test, node)
            left, right = sides
            source = ast.unparse(inner)
            try:
                checks.append(Check(i, source, "literal", ast.literal_eval(right), wrap))
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                free = _free_names(right)
                if free <= available and not free & local:
                    checks.append(Check(i, source, "ref", wrap=wrap))
                    refs.append((i, ast.unparse(right)))
                else:
                    checks.append(Check(i, ast.unparse(left), "pair"))
                    new = _call("__dg_pair__", ast.Constant(i), _thunk(left), _thunk(right))
                    return ast.copy_location(new, node)
            if not wrap:
                return record(i, inner, node)
            # A generator inside ``list(...)`` cannot be reported as it is: the worker
            # then reports the wrapped value (the program's own output either way).
            arg = ast.arguments([], [ast.arg("_dg_v")], None, [], [], None, [])
            apply = ast.Lambda(arg, _wrap_calls(wrap))
            new = _call("__dg_wrec__", ast.Constant(i), _thunk(inner), apply)
            return ast.copy_location(new, node)

    new_tree = ast.fix_missing_locations(_Rewrite().visit(tree))
    if not checks:
        raise ValueError("TestSpec.test_code has no assert statement to check")
    return ast.unparse(new_tree), refs, checks
