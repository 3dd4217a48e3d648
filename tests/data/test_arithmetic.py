"""The safe evaluator: exact on good input, a clean ExpressionError on anything else, never slow."""

import time
from fractions import Fraction

import pytest

from bitzero.data.arithmetic import (
    ExpressionError,
    decimal_places,
    evaluate,
    format_number,
    parse_number,
)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("48/2", Fraction(24)),
        ("100-50-30-15", Fraction(5)),
        ("0.1+0.2", Fraction(3, 10)),
        ("80/100*10", Fraction(8)),
        ("12/60", Fraction(1, 5)),
        ("7//2", Fraction(3)),
        ("7%3", Fraction(1)),
        ("2**10", Fraction(1024)),
        ("2**-2", Fraction(1, 4)),
        ("-(3+4)*+2", Fraction(-14)),
        (".5*4", Fraction(2)),
        ("1e3", Fraction(1000)),
        (" (1 + 2) * 3 ", Fraction(9)),
    ],
)
def test_evaluates_exactly(expr: str, expected: Fraction) -> None:
    assert evaluate(expr) == expected


def test_integer_is_decided_exactly() -> None:
    assert evaluate("0.1*3*10").denominator == 1
    assert evaluate("10/3").denominator == 3


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('echo hacked')",
        "x + 1",
        "abs(-3)",
        "(1).real",
        "'a' * 3",
        "[1, 2]",
        "True + 1",
        "1 if 1 else 2",
        "lambda: 1",
        "1 < 2",
        "1j * 2",
        "1, 2",
        "1 << 3",
        "a = 1",
        "",
        "2 +",
    ],
)
def test_rejects_anything_but_arithmetic(expr: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate(expr)


@pytest.mark.parametrize("expr", ["1/0", "1//0", "5%0", "0**-1", "1/(2-2)"])
def test_division_by_zero_is_an_expression_error(expr: str) -> None:
    with pytest.raises(ExpressionError, match="division by zero"):
        evaluate(expr)


@pytest.mark.parametrize(
    "expr", ["9**9**9", "10**31", "2**0.5", "99999999999**9", "(10**20)*(10**20)", "1/10**40", "9" * 40]
)
def test_huge_or_inexact_values_fail_fast(expr: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ExpressionError):
        evaluate(expr)
    assert time.perf_counter() - start < 0.5


def test_long_or_deep_input_is_rejected() -> None:
    with pytest.raises(ExpressionError):
        evaluate("1+" * 400 + "1")
    with pytest.raises(ExpressionError):
        evaluate("(" * 300 + "1" + ")" * 300)


def test_parse_number_reads_prose_styles() -> None:
    assert parse_number("1,000") == 1000
    assert parse_number("-3.5") == Fraction(-7, 2)
    assert parse_number(".25") == Fraction(1, 4)
    for bad in ("1,00", "abc", "1.2.3", ""):
        with pytest.raises(ExpressionError):
            parse_number(bad)


def test_decimal_places() -> None:
    assert decimal_places(Fraction(5)) == 0
    assert decimal_places(Fraction(1, 8)) == 3
    assert decimal_places(Fraction(1, 3)) is None


@pytest.mark.parametrize(
    ("value", "template", "expected"),
    [
        (Fraction(1100), "1,000", "1,100"),
        (Fraction(26), "24", "26"),
        (Fraction(7, 4), "1.50", "1.75"),
        (Fraction(2), "1.50", "2.00"),
        (Fraction(1, 4), ".2", ".25"),
        (Fraction(1, 4), "0.2", "0.25"),
        (Fraction(-3), "3", "-3"),
        (Fraction(1234567), "1000", "1234567"),
    ],
)
def test_format_number_follows_the_template(value: Fraction, template: str, expected: str) -> None:
    assert format_number(value, template) == expected
    assert parse_number(format_number(value, template)) == value


def test_format_number_refuses_endless_decimals() -> None:
    with pytest.raises(ExpressionError):
        format_number(Fraction(1, 3), "0.3")
