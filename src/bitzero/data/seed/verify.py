"""Checks the generator runs on every record it makes, so a wrong number or a broken
solution stops generation instead of teaching the model something false."""

from __future__ import annotations

import ast
import operator
from fractions import Fraction

from bitzero.errors import DataError

_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


class SeedError(DataError, ValueError):
    """A generated record failed its own check (a template or slot list is wrong)."""


def evaluate(expression: str) -> Fraction:
    """Exact value of an arithmetic expression of integers, + - * / and parentheses."""

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return Fraction(node.value)
        raise SeedError(f"unsupported arithmetic in {expression!r}")

    return walk(ast.parse(expression, mode="eval").body)


def calc(expression: str) -> tuple[str, int]:
    """Render one solution step GSM8K-style: ``3 * 4`` -> ``3 * 4 = <<3*4=12>>12``.

    The value is computed here, never typed into a template, and must be a whole,
    non-negative number: the seed data teaches integer answers only.
    """
    value = evaluate(expression)
    if value.denominator != 1 or value < 0:
        raise SeedError(f"step {expression!r} gives {value}, not a non-negative integer")
    number = int(value)
    compact = expression.replace(" ", "")
    return f"{expression} = <<{compact}={number}>>{number}", number


def check_code(code: str, tests: list[str]) -> None:
    """Run a solution and its asserts in a fresh namespace (trusted, generated code only)."""
    namespace: dict[str, object] = {}
    try:
        exec(compile(code, "<seed-solution>", "exec"), namespace)  # our own templates
    except Exception as exc:
        raise SeedError(f"solution does not run: {exc!r}\n{code}") from exc
    for test in tests:
        try:
            exec(compile(test, "<seed-test>", "exec"), namespace)
        except Exception as exc:
            raise SeedError(f"test fails: {test} ({exc!r})\n{code}") from exc
