"""Exact, safe arithmetic for recomputing math answers: an `ast` walker, never `eval`.

Values are `Fraction`s, so "is this an integer" and "does this step check" are decided exactly
(0.1 + 0.2 == 0.3 here). Every value is bounded, so hostile or accidental input (9**9**9, huge
literals) fails fast with `ExpressionError` instead of hanging or exhausting memory.
Number text helpers live here too: the augmenter reads numbers from prose and must write them back
in the same style ("1,000", "2.50", ".5").
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from fractions import Fraction

from bitzero.errors import DataError

MAX_EXPRESSION_CHARS = 500
MAX_DIGITS = 30  # every numerator and denominator stays below 10**MAX_DIGITS
MAX_EXPONENT = 100
MAX_DECIMALS = 6  # format_number refuses to write longer decimals

# A number as written in prose: "1,000", "12", "3.5", ".5" (no sign: a "-" is an operator or a dash).
NUMBER_PATTERN = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_NUMBER_TEXT = re.compile(rf"-?(?:{NUMBER_PATTERN})")

_BINARY: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction | int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[Fraction], Fraction]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_LIMIT = 10**MAX_DIGITS


class ExpressionError(DataError, ValueError):
    """The text is not plain, bounded arithmetic, or it divides by zero."""


def evaluate(expr: str) -> Fraction:
    """Evaluate numbers, + - * / // % **, unary +/- and parentheses exactly; anything else raises."""
    if not isinstance(expr, str):
        raise ExpressionError(f"expected a string, got {type(expr).__name__}")
    source = expr.strip()
    if len(source) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError) as exc:
        raise ExpressionError(f"not an arithmetic expression: {source!r}") from exc
    try:
        return _Evaluator(source).visit(tree.body)
    except RecursionError as exc:
        raise ExpressionError("expression nested too deeply") from exc


class _Evaluator:
    def __init__(self, source: str) -> None:
        self.source = source

    def visit(self, node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant):
            return _bounded(self._constant(node))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self.visit(node.operand))
        if isinstance(node, ast.BinOp):
            left, right = self.visit(node.left), self.visit(node.right)
            if isinstance(node.op, ast.Pow):
                return _bounded(_power(left, right))
            if type(node.op) in _BINARY:
                if right == 0 and isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)):
                    raise ExpressionError("division by zero")
                return _bounded(Fraction(_BINARY[type(node.op)](left, right)))
        raise ExpressionError(f"{type(node).__name__} is not allowed in arithmetic")

    def _constant(self, node: ast.Constant) -> Fraction:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExpressionError(f"constant {value!r} is not a number")
        if isinstance(value, int):
            if value.bit_length() > MAX_DIGITS * 4:
                raise ExpressionError("number too large")
            return Fraction(value)
        # Read a float from its source text: Fraction(0.1) would be the binary approximation.
        text = ast.get_source_segment(self.source, node) or repr(value)
        try:
            return Fraction(text.replace("_", ""))
        except (ValueError, ZeroDivisionError) as exc:
            raise ExpressionError(f"unreadable number {text!r}") from exc


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise ExpressionError("non-integer exponent (the result would not be exact)")
    if abs(exponent) > MAX_EXPONENT:
        raise ExpressionError(f"exponent {exponent} beyond {MAX_EXPONENT}")
    if base == 0:
        if exponent < 0:
            raise ExpressionError("division by zero")
        return Fraction(0 if exponent else 1)
    log10 = math.log10(abs(base.numerator)) - math.log10(base.denominator)
    if abs(exponent) * abs(log10) > MAX_DIGITS:
        raise ExpressionError("power too large")
    return base ** int(exponent)


def _bounded(value: Fraction) -> Fraction:
    if abs(value.numerator) >= _LIMIT or value.denominator >= _LIMIT:
        raise ExpressionError(f"value beyond 10**{MAX_DIGITS}")
    return value


def parse_number(text: str) -> Fraction:
    """Read a written number ("1,000", "-3.5", ".5") exactly."""
    text = text.strip()
    if not _NUMBER_TEXT.fullmatch(text):
        raise ExpressionError(f"not a number: {text!r}")
    return Fraction(text.replace(",", ""))


def decimal_places(value: Fraction) -> int | None:
    """Decimals needed to write the value exactly, or None if its decimal expansion never ends."""
    denominator = value.denominator
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    return max(twos, fives) if denominator == 1 else None


def format_number(value: Fraction, template: str) -> str:
    """Write the value in the template's style: its commas, at least its decimals, its bare '.5'."""
    places = decimal_places(value)
    if places is None or places > MAX_DECIMALS:
        raise ExpressionError(f"{value} has no short exact decimal form")
    template = template.strip().lstrip("-")
    _, dot, template_decimals = template.partition(".")
    decimals = max(places, len(template_decimals) if dot else 0)
    digits = str(abs(value.numerator * 10**decimals // value.denominator)).rjust(decimals + 1, "0")
    whole, fraction = digits[: len(digits) - decimals], digits[len(digits) - decimals :]
    if "," in template:
        whole = f"{int(whole):,}"
    if whole == "0" and template.startswith(".") and decimals:
        whole = ""
    sign = "-" if value < 0 else ""
    return f"{sign}{whole}.{fraction}" if decimals else f"{sign}{whole}"
