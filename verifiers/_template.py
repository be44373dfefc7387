"""Asserts as templates: the candidate computes only its own calls, the parent the rest.

``assert abs(candidate(1.33) - 0.33) < 1e-6`` becomes the *holes* ``(candidate(1.33),)``,
which the candidate's process reports, and the *template* ``abs(_h0 - 0.33) < 1e-6``,
which the parent evaluates on the decoded hole values. A hole is a call to something
the test does not define itself (the candidate's function); everything around it must
be one of the pure operations below, applied here to plain decoded data, so no
predicate, constant or comparison of the test is computed where the candidate runs.
Asserts that need more (the test's own variables, helpers from setup code) are not
templates: :mod:`verifiers._asserts` marks them forgeable.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

# Pure builtins the parent applies to decoded values (no attribute access on them).
WRAPPERS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "all": all,
    "any": any,
    "bool": bool,
    "float": float,
    "frozenset": frozenset,
    "int": int,
    "len": len,
    "list": list,
    "max": max,
    "min": min,
    "round": round,
    "set": set,
    "sorted": sorted,
    "str": str,
    "sum": sum,
    "tuple": tuple,
}
_MATH = {"isclose": math.isclose, "fabs": math.fabs, "sqrt": math.sqrt, "floor": math.floor}
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_MAX_BITS = 4096  # arithmetic here is on test-sized numbers, not the candidate's bignums
HOLE = "_dg_hole_"


class NotATemplate(Exception):
    """The expression uses something the parent does not evaluate."""


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def split(
    expr: ast.expr, is_candidate_call: Callable[[ast.Call], bool]
) -> tuple[ast.expr, list[ast.expr]]:
    """Return ``(template, holes)``; the template names hole ``k`` ``_dg_hole_k``.

    Raises:
        NotATemplate: Some part is neither a hole nor evaluable in the parent.
    """
    holes: list[ast.expr] = []

    def walk(node: ast.expr) -> ast.expr:
        if _literal(node):
            return node
        if isinstance(node, ast.Call) and is_candidate_call(node):
            holes.append(node)
            return ast.Name(f"{HOLE}{len(holes) - 1}", ast.Load())
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
            return ast.UnaryOp(node.op, walk(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return ast.BinOp(walk(node.left), node.op, walk(node.right))
        if isinstance(node, ast.BoolOp):
            return ast.BoolOp(node.op, [walk(v) for v in node.values])
        if isinstance(node, ast.Compare) and all(
            type(op) in _CMPOPS or isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops
        ):
            return ast.Compare(walk(node.left), node.ops, [walk(c) for c in node.comparators])
        if isinstance(node, (ast.Tuple, ast.List)):
            return type(node)([walk(e) for e in node.elts], ast.Load())
        if isinstance(node, ast.Call) and _callee(node.func) is not None:
            args = [walk(a) for a in node.args]
            kws = [ast.keyword(k.arg, walk(k.value)) for k in node.keywords if k.arg]
            if len(kws) != len(node.keywords):
                raise NotATemplate("**kwargs")
            return ast.Call(node.func, args, kws)
        raise NotATemplate(type(node).__name__)

    return walk(expr), holes


def _callee(func: ast.expr) -> Callable[..., Any] | None:
    if isinstance(func, ast.Name):
        return WRAPPERS.get(func.id)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return _MATH.get(func.attr) if func.value.id == "math" else None
    return None


def _small(value: Any) -> Any:
    if type(value) is int and value.bit_length() > _MAX_BITS:
        raise OverflowError("number too large for the parent's template arithmetic")
    return value


def evaluate(template: ast.expr, holes: list[Any], equal: Callable[[Any, Any], bool]) -> Any:
    """Evaluate ``template`` on decoded hole values; ``equal`` implements ``==``.

    Raises:
        Exception: Whatever the operation raises on these values (the assert would
            have raised too); the caller grades it as a failed test.
    """

    def ev(node: ast.expr) -> Any:
        if isinstance(node, ast.Name) and node.id.startswith(HOLE):
            return holes[int(node.id[len(HOLE) :])]
        if isinstance(node, ast.UnaryOp):
            value = ev(node.operand)
            if isinstance(node.op, ast.Not):
                return not value
            return _small(-value if isinstance(node.op, ast.USub) else +value)
        if isinstance(node, ast.BinOp):
            left, right = _small(ev(node.left)), _small(ev(node.right))
            if not all(type(v) in (int, float) for v in (left, right)):
                raise TypeError("the parent's template arithmetic is for numbers only")
            return _small(_BINOPS[type(node.op)](left, right))
        if isinstance(node, ast.BoolOp):
            is_and = isinstance(node.op, ast.And)
            value: Any = None
            for v in node.values:
                value = ev(v)
                if bool(value) != is_and:
                    return value
            return value
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = ev(right_node)
                if isinstance(op, (ast.Eq, ast.NotEq)):
                    ok = equal(left, right) == isinstance(op, ast.Eq)
                else:
                    ok = bool(_CMPOPS[type(op)](left, right))
                if not ok:
                    return False
                left = right
            return True
        if isinstance(node, (ast.Tuple, ast.List)):
            items = [ev(e) for e in node.elts]
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.Call):
            fn = _callee(node.func)
            assert fn is not None  # split() only keeps known callees
            kwargs = {k.arg: ev(k.value) for k in node.keywords if k.arg}
            return fn(*[ev(a) for a in node.args], **kwargs)
        return ast.literal_eval(node)

    return ev(template)
