"""Math word problems and plain arithmetic, difficulty 1..5, with GSM8K-style solutions.

Every step is computed by ``calc`` (exact arithmetic), so the numbers in a solution are right by
construction; the final line ``#### N`` is the value of the last step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from random import Random

from bitzero.data.seed.slots import ITEMS, PEOPLE, RELATIVES
from bitzero.data.seed.verify import SeedError, calc

Problem = tuple[str, list[str], int]  # question, solution lines, answer
_STEP_VALUE = re.compile(r">>(\d+)")


def _person(r: Random) -> tuple[str, str, str]:
    return r.choice(PEOPLE)


def _d1(r: Random) -> Problem:
    name, she, _ = _person(r)
    item = r.choice(ITEMS)
    a, b = r.randint(5, 60), r.randint(2, 40)
    kind = r.randrange(4)
    if kind == 0:
        step, v = calc(f"{a} + {b}")
        q = f"{name} has {a} {item}. {she.capitalize()} finds {b} more. How many {item} does {name} have now?"
        return q, [f"{name} has {step} {item} now."], v
    if kind == 1:
        a, b = max(a, b + 1), min(a, b)
        step, v = calc(f"{a} - {b}")
        q = f"{name} had {a} {item} and gave {b} of them away. How many {item} are left?"
        return q, [f"{name} has {step} {item} left."], v
    op = r.choice("+-")
    a, b = (a, b) if op == "+" else (max(a, b), min(a, b))
    step, v = calc(f"{a} {op} {b}")
    q = r.choice(("What is {a} {op} {b}?", "Calculate {a} {op} {b}.", "Work out {a} {op} {b}."))
    return q.format(a=a, op=op, b=b), [step], v


def _d2(r: Random) -> Problem:
    name, she, her = _person(r)
    a, b = r.randint(10, 60), r.randint(3, 30)
    c = r.randint(2, a + b - 1)
    first, x = calc(f"{a} + {b}")
    second, y = calc(f"{x} - {c}")
    kind = r.randrange(3)
    if kind == 0:
        item = r.choice(ITEMS)
        q = (f"{name} has {a} {item}. {she.capitalize()} buys {b} more and then gives {c} to "
             f"{her} {r.choice(RELATIVES)}. How many {item} does {name} have now?")
        lines = [f"After buying, {she} has {first} {item}.", f"After giving some away, {she} has {second} {item}."]
    elif kind == 1:
        q = (f"A bus has {a} passengers. At the next stop {b} people get on and {c} people get off. "
             "How many passengers are on the bus now?")
        lines = [f"After people get on there are {first} passengers.",
                 f"After people get off there are {second} passengers."]
    else:
        q = f"What is {a} + {b} - {c}?"
        lines = [f"First, {first}.", f"Then, {second}."]
    return q, lines, y


def _d3(r: Random) -> Problem:
    name, _, _ = _person(r)
    item = r.choice(ITEMS)
    n, k = r.randint(2, 12), r.randint(2, 15)
    kind = r.randrange(4)
    if kind == 0:
        step, v = calc(f"{n} * {k}")
        q = f"{name} buys {n} boxes of {item}. Each box holds {k} {item}. How many {item} does {name} buy?"
        return q, [f"{name} buys {step} {item}."], v
    if kind == 1:
        step, v = calc(f"{n * k} / {n}")
        q = f"{name} shares {n * k} {item} equally among {n} friends. How many {item} does each friend get?"
        return q, [f"Each friend gets {step} {item}."], v
    if kind == 2:
        step, v = calc(f"{n} * {k}")
        q = f"A garden has {n} rows of tulips with {k} tulips in each row. How many tulips are in the garden?"
        return q, [f"There are {step} tulips."], v
    expr = r.choice((f"{n} * {k}", f"{n * k} / {k}"))
    step, v = calc(expr)
    return f"What is {expr}?", [step], v


def _d4(r: Random) -> Problem:
    name, she, _ = _person(r)
    kind = r.randrange(4)
    if kind == 0:
        wage, h1, h2 = r.randint(8, 25), r.randint(2, 8), r.randint(2, 8)
        s1, hours = calc(f"{h1} + {h2}")
        s2, pay = calc(f"{hours} * {wage}")
        spend = r.randint(5, pay - 1)
        s3, left = calc(f"{pay} - {spend}")
        q = (f"{name} earns ${wage} per hour. {she.capitalize()} works {h1} hours on Monday and {h2} hours "
             f"on Tuesday, then spends ${spend} on groceries. How many dollars does {she} have left from that pay?")
        return q, [f"{name} works {s1} hours.", f"{she.capitalize()} earns {s2} dollars.",
                   f"{she.capitalize()} has {s3} dollars left."], left
    if kind == 1:
        count, price, bag = r.randint(2, 6), r.randint(2, 9), r.randint(10, 30)
        s1, books = calc(f"{count} * {price}")
        s2, total = calc(f"{books} + {bag}")
        bill = 50 if total < 50 else 100
        s3, change = calc(f"{bill} - {total}")
        q = (f"{name} buys {count} notebooks that cost ${price} each and a backpack that costs ${bag}. "
             f"{she.capitalize()} pays with a ${bill} bill. How much change does {she} get in dollars?")
        return q, [f"The notebooks cost {s1} dollars.", f"Everything costs {s2} dollars.",
                   f"The change is {s3} dollars."], change
    if kind == 2:
        trays, per = r.randint(3, 9), r.randint(6, 12)
        s1, made = calc(f"{trays} * {per}")
        morning = r.randint(2, made // 2)
        afternoon = r.randint(2, made - morning)
        s2, after = calc(f"{made} - {morning}")
        s3, left = calc(f"{after} - {afternoon}")
        q = (f"A baker makes {trays} trays of muffins with {per} muffins on each tray. {morning} muffins are sold "
             f"in the morning and {afternoon} in the afternoon. How many muffins are left?")
        return q, [f"The baker makes {s1} muffins.", f"After the morning there are {s2} muffins.",
                   f"At the end there are {s3} muffins."], left
    a, b, c = r.randint(2, 20), r.randint(2, 20), r.randint(2, 9)
    s1, x = calc(f"{a} + {b}")
    s2, y = calc(f"{x} * {c}")
    d = r.randint(1, y)
    s3, z = calc(f"{y} - {d}")
    return f"What is ({a} + {b}) * {c} - {d}?", [f"First, {s1}.", f"Next, {s2}.", f"Finally, {s3}."], z


def _d5(r: Random) -> Problem:
    name, she, _ = _person(r)
    pct = r.choice((10, 20, 25, 50, 75, 30, 40))
    base = r.randint(1, 12) * 20
    kind = r.randrange(5)
    if kind == 0:
        s1, off = calc(f"{base} * {pct} / 100")
        s2, price = calc(f"{base} - {off}")
        q = f"A jacket costs ${base}. It is on sale for {pct}% off. What is the sale price in dollars?"
        return q, [f"The discount is {s1} dollars.", f"The sale price is {s2} dollars."], price
    if kind == 1:
        s1, more = calc(f"{base} * {pct} / 100")
        s2, now = calc(f"{base} + {more}")
        q = (f"A park had {base} trees. This year the number of trees grew by {pct}%. "
             "How many trees does the park have now?")
        return q, [f"The park gained {s1} trees.", f"Now it has {s2} trees."], now
    num, den = r.choice(((1, 2), (1, 3), (2, 3), (1, 4), (3, 4), (2, 5), (3, 5), (1, 6), (5, 6)))
    total = den * r.randint(3, 12)
    if kind == 2:
        s1, walk = calc(f"{total} * {num} / {den}")
        s2, rest = calc(f"{total} - {walk}")
        q = (f"A class has {total} students. {num}/{den} of them walk to school. "
             "How many students do not walk to school?")
        return q, [f"{s1} students walk.", f"{s2} students do not walk."], rest
    if kind == 3:
        total = den * r.randint(10, 40)
        s1, monday = calc(f"{total} * {num} / {den}")
        extra = r.randint(2, total - monday - 1)
        s2, read = calc(f"{monday} + {extra}")
        s3, left = calc(f"{total} - {read}")
        q = (f"{name} is reading a book with {total} pages. {she.capitalize()} reads {num}/{den} of it on Monday "
             f"and {extra} more pages on Tuesday. How many pages are left?")
        return q, [f"On Monday {she} reads {s1} pages.", f"So far {she} has read {s2} pages.",
                   f"There are {s3} pages left."], left
    step, v = calc(f"{base} * {pct} / 100")
    return f"What is {pct}% of {base}?", [step], v


_BY_DIFFICULTY: dict[int, Callable[[Random], Problem]] = {1: _d1, 2: _d2, 3: _d3, 4: _d4, 5: _d5}


def math_problem(r: Random, difficulty: int) -> tuple[str, str, str]:
    """(question, GSM8K-style solution ending in ``#### N``, answer) at the given difficulty."""
    question, lines, answer = _BY_DIFFICULTY[difficulty](r)
    steps = _STEP_VALUE.findall(lines[-1])
    if not steps or steps[-1] != str(answer):
        raise SeedError(f"answer {answer} is not the last step of {lines}")
    return question, "\n".join(lines) + f"\n#### {answer}", str(answer)
