"""Math variants: new numbers in the question, every step of the solution recomputed exactly.

A variant is only made when its answer is *recomputed*, never guessed. The solution must carry
GSM8K-style steps ``<<48/2=24>>``. Question numbers are redrawn within ±max_change; the steps are
replayed in order: each operand is looked up by value (a question number, a percentage of one, an
earlier step's result, or a known unit constant), the step is re-evaluated exactly, and its result
extends the old→new mapping so later steps and the prose ("so she has 24 left") follow. A draw is
rejected, with a counted reason, when a step no longer makes sense (a whole count becomes
fractional, a count turns negative), when a number is ambiguous (two sources of one value now
disagree), or when a visible equation in the prose ("10 - 5 = 5") no longer checks.

Number policy: integers below 5 and numbers below 1 are kept, because in word problems they mostly
mean "one", "twice", "half" (and ±20% leaves no other integer for 1-4 anyway); numbers touching a
":" (times, ratios) are kept. Integers stay integers and keep their roundness where the range
allows (100 becomes 90 or 110, not 97); decimals keep their number of decimals; the order of the
question's numbers is preserved, so "more than" and "less than" stay true.
Limitation: a unit constant in a step that happens to equal a question number (a "60" for minutes
while the question also says "60 apples") is treated as that number.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import random
import re
from collections import Counter
from fractions import Fraction
from typing import Any

from bitzero.data.arithmetic import (
    NUMBER_PATTERN,
    ExpressionError,
    decimal_places,
    evaluate,
    format_number,
    parse_number,
)
from bitzero.data.records import Record
from bitzero.errors import DataError

ATTEMPTS = 20  # draws tried per variant before giving up with the last reason
KEPT_INTEGERS_BELOW = 5

NOT_SINGLE_EXCHANGE = "not a single question and answer"
NO_COMPUTATION = "no computation to recompute"
NO_FINAL_ANSWER = "no final answer"
ANSWER_NOT_NUMBER = "answer is not a number"
ANSWER_DISAGREES = "answer field disagrees with the solution"
NOTHING_TO_CHANGE = "no number in the question can change"
STEP_UNREADABLE = "step result is not a number"
STEP_NEGATIVE = "step with a negative result"
STEP_DOES_NOT_EVALUATE = "expression does not evaluate"
STEP_DOES_NOT_CHECK = "original step does not check"
NO_SOURCE = "operand with no source (unannotated step?)"
FINAL_NOT_A_STEP = "final answer is not the result of any step"
NOT_ROUND_TRIP = "solution does not round-trip"
NON_INTEGER = "non-integer result where the original was an integer"
LONG_DECIMAL = "result is not a short exact decimal"
SIGN_CHANGED = "result became zero or negative"
AMBIGUOUS = "ambiguous number (two sources now disagree)"
VISIBLE_MISMATCH = "visible arithmetic does not check"
ORDER_CHANGED = "could not keep the numbers' order"
DUPLICATE = "could not draw a distinct variant"

_ANNOTATION = re.compile(r"<<([^<>]*)>>")
_PROSE_NUMBER = re.compile(rf"(?<![\w.])(?:{NUMBER_PATTERN})(?!\w)")
_STEP_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?|\.\d+")
_FINAL = re.compile(r"####\s*(-?[\d.,]+)")
_PERCENT = re.compile(r"\s*(?:%|percent\b)")
_EQUATION = re.compile(rf"([-\d.,$()+*/x×÷ ]*\d[-\d.,$()+*/x×÷ ]*?)=\s*\$?\s*({NUMBER_PATTERN})")
_HAS_OPERATOR = re.compile(r"[\d)]\s*[-+*/]\s*[\d(.]")

# Operands a step may use without a source in the question: small multipliers and unit constants.
_UNIT_CONSTANTS = frozenset(
    [Fraction(n) for n in (*range(13), 24, 30, 52, 60, 100, 365, 1000)]
    + [Fraction(1, 2), Fraction(1, 4), Fraction(1, 10), Fraction(1, 100)]
)
_WORD_NUMBERS = {
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
    "million": 1_000_000, "score": 20, "quarter": 4,
}  # fmt: skip
_UNITS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
_WORD = re.compile(r"\b(" + "|".join(_WORD_NUMBERS) + r")(?:-(" + "|".join(_UNITS) + r"))?\b", re.I)


# Pure functions called with the same text on every draw: caching them halves the run time.
_number = functools.lru_cache(maxsize=1 << 16)(parse_number)
_evaluate = functools.lru_cache(maxsize=1 << 16)(evaluate)


class VariantSkipped(DataError):
    """This record, or this draw of numbers, cannot give a variant with a recomputed answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def math_variants(
    record: Record, n_variants: int, rng: random.Random, max_change: float = 0.2
) -> tuple[list[Record], list[str]]:
    """Up to n_variants copies with new numbers and recomputed answers, and a reason per one not made."""
    if not 0 < max_change < 1:
        raise ValueError(f"max_change must be in (0, 1), got {max_change}")
    if n_variants <= 0:
        return [], []
    try:
        problem = _Problem(record)
    except VariantSkipped as skip:
        return [], [skip.reason] * n_variants
    variants: list[Record] = []
    reasons: list[str] = []
    seen = {problem.question}
    for k in range(1, n_variants + 1):
        reason = ""
        for _ in range(ATTEMPTS):
            try:
                question, solution, answer = problem.rewrite(problem.draw(rng, max_change))
            except VariantSkipped as skip:
                reason = skip.reason
                continue
            if question in seen:
                reason = DUPLICATE
                continue
            seen.add(question)
            variants.append(problem.variant(k, question, solution, answer))
            reason = ""
            break
        if reason:
            reasons.append(reason)
    return variants, reasons


def augment_records(
    records: list[Record], n_variants: int, seed: int, max_change: float = 0.2
) -> tuple[list[Record], dict[str, Any]]:
    """Every record, each original math record followed by its variants; plus counts and skip reasons.

    Each record draws from its own generator seeded by (seed, id), so its variants do not depend
    on which other records are present or on their order.
    """
    output: list[Record] = []
    reasons: Counter[str] = Counter()
    made = originals = 0
    for record in records:
        output.append(record)
        if record.get("type") != "math" or record.get("parent_id"):
            continue
        originals += 1
        rng = random.Random(f"{seed}:{record.get('id')}")
        variants, skipped = math_variants(record, n_variants, rng, max_change)
        output.extend(variants)
        made += len(variants)
        reasons.update(skipped)
    stats = {
        "records_in": len(records),
        "math_originals": originals,
        "variants_made": made,
        "variants_skipped": sum(reasons.values()),
        "skip_reasons": dict(reasons.most_common()),
    }
    return output, stats


class _Problem:
    """A math record taken apart once: question numbers, solution, final answer; checked as-is."""

    def __init__(self, record: Record) -> None:
        self.record = record
        turns = record.get("conversation") or []
        roles = [turn.get("role") for turn in turns if isinstance(turn, dict)]
        if roles.count("user") != 1 or roles.count("assistant") != 1 or len(roles) != len(turns):
            raise VariantSkipped(NOT_SINGLE_EXCHANGE)
        self.user_index, self.assistant_index = roles.index("user"), roles.index("assistant")
        self.question = str(turns[self.user_index].get("content", ""))
        self.solution = str(turns[self.assistant_index].get("content", ""))
        if not _ANNOTATION.search(self.solution):
            raise VariantSkipped(NO_COMPUTATION)
        self.answer_template, self.answer = _final_answer(record, self.solution)
        self.tokens = [(m, _number(m.group())) for m in _PROSE_NUMBER.finditer(self.question)]
        self.fixed = {value for m, value in self.tokens if _is_kept(m, value)}
        decimals: dict[Fraction, int] = {}
        for m, value in self.tokens:
            places = len(m.group().partition(".")[2])
            decimals[value] = min(decimals.get(value, places), places)
        self.changeable = {v: d for v, d in decimals.items() if v not in self.fixed}
        if not self.changeable:
            raise VariantSkipped(NOTHING_TO_CHANGE)
        self.percents = {value for m, value in self.tokens if _PERCENT.match(self.question, m.end())}
        self.constants = _UNIT_CONSTANTS | _word_numbers(self.question)
        self.visible = _visible_equations(self.solution)
        identity = {value: value for _, value in self.tokens}
        if self.rewrite(identity) != (self.question, self.solution, self.answer_template):
            raise VariantSkipped(NOT_ROUND_TRIP)

    def draw(self, rng: random.Random, max_change: float) -> dict[Fraction, Fraction]:
        """New values for the changeable question numbers; the order of all numbers is kept."""
        mapping = {value: value for value in self.fixed}
        for value in sorted(self.changeable):
            mapping[value] = _draw_value(value, self.changeable[value], rng, max_change)
        ordered = [mapping[value] for value in sorted(mapping)]
        if any(a >= b for a, b in itertools.pairwise(ordered)):
            raise VariantSkipped(ORDER_CHANGED)
        return mapping

    def rewrite(self, mapping: dict[Fraction, Fraction]) -> tuple[str, str, str]:
        """(question, solution, answer) with the mapping applied and every step recomputed."""
        chain = _Chain(self.constants)
        for old, new in mapping.items():
            chain.bind(old, new)
        for old in self.percents:
            chain.bind(old / 100, mapping[old] / 100)
        question = _PROSE_NUMBER.sub(
            lambda m: format_number(mapping[_number(m.group())], m.group()), self.question
        )
        lines = []
        for line in self.solution.split("\n"):
            parts = _ANNOTATION.split(line)
            steps = [chain.step(annotation) for annotation in parts[1::2]]
            prose = [chain.prose(text) for text in parts[0::2]]
            lines.append(prose[0] + "".join(f"<<{s}>>{p}" for s, p in zip(steps, prose[1:], strict=True)))
        solution = "\n".join(lines)
        if self.answer not in chain.step_results:
            raise VariantSkipped(FINAL_NOT_A_STEP)
        answer = _formatted(chain.lookup(self.answer, strict=True), self.answer_template)
        new_visible = _visible_equations(solution)
        if len(new_visible) != len(self.visible) or any(
            was and not now for was, now in zip(self.visible, new_visible, strict=True)
        ):
            raise VariantSkipped(VISIBLE_MISMATCH)
        return question, solution, answer

    def variant(self, k: int, question: str, solution: str, answer: str) -> Record:
        variant = copy.deepcopy(self.record)
        variant["id"] = f"{self.record['id']}-v{k}"
        variant["parent_id"] = self.record["id"]
        variant["conversation"][self.user_index]["content"] = question
        variant["conversation"][self.assistant_index]["content"] = solution
        variant["answer"] = answer
        return variant


class _Chain:
    """The old→new value mapping as it grows step by step through one solution."""

    def __init__(self, constants: frozenset[Fraction]) -> None:
        self.constants = constants
        self.bindings: dict[Fraction, Fraction] = {}
        self.ambiguous: set[Fraction] = set()
        self.unbound_seen: set[Fraction] = set()
        self.step_results: set[Fraction] = set()

    def bind(self, old: Fraction, new: Fraction) -> None:
        previous = self.bindings.get(old, old if old in self.unbound_seen else new)
        if old in self.ambiguous or previous != new:
            self.bindings.pop(old, None)
            self.ambiguous.add(old)
        else:
            self.bindings[old] = new

    def lookup(self, old: Fraction, strict: bool) -> Fraction:
        if old in self.ambiguous:
            raise VariantSkipped(AMBIGUOUS)
        if old in self.bindings:
            return self.bindings[old]
        if strict and old not in self.constants:
            raise VariantSkipped(NO_SOURCE)
        self.unbound_seen.add(old)
        return old

    def step(self, annotation: str) -> str:
        """Recompute one ``expr=value`` step with the current mapping; return its new text."""
        expression, equals, result_text = annotation.rpartition("=")
        try:
            old_result = _number(result_text)
        except ExpressionError:
            raise VariantSkipped(STEP_UNREADABLE) from None
        if not equals:
            raise VariantSkipped(STEP_DOES_NOT_EVALUATE)
        if old_result < 0:
            raise VariantSkipped(STEP_NEGATIVE)
        try:
            original = _evaluate(_plain(expression))
        except ExpressionError:
            raise VariantSkipped(STEP_DOES_NOT_EVALUATE) from None
        if original != old_result:
            raise VariantSkipped(STEP_DOES_NOT_CHECK)
        new_expression = _STEP_NUMBER.sub(
            lambda m: _formatted(self.lookup(_number(m.group()), strict=True), m.group()), expression
        )
        try:
            new_result = _evaluate(_plain(new_expression))
        except ExpressionError:
            raise VariantSkipped(STEP_DOES_NOT_EVALUATE) from None
        if old_result.denominator == 1 and new_result.denominator != 1:
            raise VariantSkipped(NON_INTEGER)
        places = decimal_places(new_result)
        if places is None or places > max(2, decimal_places(old_result) or 0):
            raise VariantSkipped(LONG_DECIMAL)
        if new_result < 0 or (old_result > 0 and new_result == 0):
            raise VariantSkipped(SIGN_CHANGED)
        self.bind(old_result, new_result)
        self.step_results.add(old_result)
        return f"{new_expression}={_formatted(new_result, result_text)}"

    def prose(self, text: str) -> str:
        return _PROSE_NUMBER.sub(
            lambda m: _formatted(self.lookup(_number(m.group()), strict=False), m.group()), text
        )


def _final_answer(record: Record, solution: str) -> tuple[str, Fraction]:
    """(the answer field's text, its value); the solution's "#### N" must agree with it."""
    match = _FINAL.search(solution)
    final = match.group(1).rstrip(".,") if match else None
    template = record.get("answer", final)
    if template is None:
        raise VariantSkipped(NO_FINAL_ANSWER)
    try:
        value = _number(str(template))
    except ExpressionError:
        raise VariantSkipped(ANSWER_NOT_NUMBER) from None
    if final is not None:
        try:
            agrees = _number(final) == value
        except ExpressionError:
            agrees = False
        if not agrees:
            raise VariantSkipped(ANSWER_DISAGREES)
    return str(template), value


def _is_kept(match: re.Match[str], value: Fraction) -> bool:
    text = match.string
    touches_colon = text[match.start() - 1 : match.start()] == ":" or text[match.end() : match.end() + 1] == ":"
    small = value < 1 or (value.denominator == 1 and value < KEPT_INTEGERS_BELOW)
    return touches_colon or small


def _draw_value(value: Fraction, decimals: int, rng: random.Random, max_change: float) -> Fraction:
    """A different value within ±max_change with the same decimals, as round as the range allows."""
    scale = 10**decimals
    units = int(value * scale)
    low = math.ceil(units * (1 - Fraction(max_change)))
    high = math.floor(units * (1 + Fraction(max_change)))
    step = 10 ** (len(str(units)) - len(str(units).rstrip("0")))
    while step > 1 and (high // step) - (-(-low // step)) < 1:
        step //= 10
    first, last = -(-low // step), high // step
    if last - first < 1:
        raise VariantSkipped(NOTHING_TO_CHANGE)
    pick = first + rng.randrange(last - first)  # one of the multiples other than units itself
    if pick >= units // step:
        pick += 1
    return Fraction(pick * step, scale)


def _formatted(value: Fraction, template: str) -> str:
    try:
        return format_number(value, template)
    except ExpressionError:
        raise VariantSkipped(LONG_DECIMAL) from None


def _plain(expression: str) -> str:
    """Drop thousands separators so "1,000*2" evaluates as arithmetic, not as a tuple."""
    return re.sub(r"(?<=\d),(?=\d{3})", "", expression)


def _word_numbers(question: str) -> frozenset[Fraction]:
    values = set()
    for m in _WORD.finditer(question):
        base = _WORD_NUMBERS[m.group(1).lower()]
        values.add(Fraction(base + (_UNITS[m.group(2).lower()] if m.group(2) else 0)))
    return frozenset(values)


def _visible_equations(solution: str) -> list[bool]:
    """For each "a op b = c" written in the prose (steps removed), whether it checks exactly."""
    checks = []
    for m in _EQUATION.finditer(_ANNOTATION.sub("", solution)):
        left = m.group(1)
        left = left[min((left.find(c) for c in "0123456789(." if c in left), default=0) :]
        left = _plain(left.replace("$", "")).replace("×", "*").replace("÷", "/").replace("x", "*")
        if not _HAS_OPERATOR.search(left):
            continue
        try:
            checks.append(_evaluate(left) == _number(m.group(2)))
        except ExpressionError:
            checks.append(False)
    return checks
