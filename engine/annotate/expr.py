"""Safe arithmetic expressions for ``[[postannotation]]`` ops (the replacement for vcfanno's Lua).

Parsed with :mod:`ast`; only numbers, the named fields, arithmetic/comparison/boolean operators,
conditional expressions, indexing a field (``AC[0]``) and a few pure functions are allowed. Nothing
is ever passed to ``eval``.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: operator.not_,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "sum": sum,
    "len": len,
    "round": round,
    "log10": math.log10,
    "log": math.log,
    "sqrt": math.sqrt,
}


class Expression:
    """A compiled expression; ``evaluate(values)`` maps field names to numbers or lists of numbers."""

    def __init__(self, text: str, tree: ast.Expression) -> None:
        self.text = text
        self._tree = tree

    def evaluate(self, values: dict[str, Any]) -> Any:
        return _eval(self._tree.body, values)


def compile_expression(text: str, fields: Sequence[str]) -> Expression:
    """Parse ``text``; raises ValueError for syntax errors, unknown names or disallowed constructs."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise ValueError(f"syntax error: {error.msg}") from error
    allowed_names = set(fields)
    for node in ast.walk(tree):
        _check_node(node, allowed_names)
    return Expression(text, tree)


def _check_node(node: ast.AST, names: set[str]) -> None:
    allowed = (
        ast.Expression,
        ast.BinOp,
        ast.UnaryOp,
        ast.BoolOp,
        ast.Compare,
        ast.IfExp,
        ast.Constant,
        ast.Name,
        ast.Load,
        ast.Subscript,
        ast.Call,
        ast.And,
        ast.Or,
        *_BINARY,
        *_UNARY,
        *_COMPARE,
    )
    if not isinstance(node, allowed):
        raise ValueError(f"{type(node).__name__} is not allowed")
    if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
        raise ValueError(f"constant {node.value!r} is not a number")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
            raise ValueError(f"only the functions {sorted(_FUNCTIONS)} may be called")
    elif isinstance(node, ast.Name) and node.id not in names and node.id not in _FUNCTIONS:
        raise ValueError(f"name {node.id!r} is not one of the fields {sorted(names)}")


def _eval(node: ast.AST, values: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, values), _eval(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, values))
    if isinstance(node, ast.BoolOp):
        results = [_eval(v, values) for v in node.values]
        return all(results) if isinstance(node.op, ast.And) else any(results)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, values)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, values)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body, values) if _eval(node.test, values) else _eval(node.orelse, values)
    if isinstance(node, ast.Subscript):
        return _eval(node.value, values)[_eval(node.slice, values)]
    if isinstance(node, ast.Call):
        func = _FUNCTIONS[node.func.id]  # type: ignore[attr-defined]
        return func(*[_eval(a, values) for a in node.args])
    raise ValueError(f"{type(node).__name__} is not allowed")
