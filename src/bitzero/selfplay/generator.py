"""The cold start: a seeded task generator with difficulty levels, and the curriculum over it.

Level 1 is one operation on a small integer (what a tiny model can learn within minutes,
docs/references.md §7), level 2 two operations or a comparison, level 3 a list or string builtin.
Tasks come out unlabelled: the executor computes every output (`Verifier.label`), so the
generator never states an answer itself. The curriculum follows the user's plan
(user-recommendations.md §4.3): math-heavy early, balanced in the middle, code-heavy late.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from random import Random

from bitzero.selfplay.tasks import CODE_KINDS, KINDS, Task

LEVELS = (1, 2, 3)
Template = Callable[[Random], tuple[str, Callable[[Random], str]]]


def _small(r: Random) -> str:
    return str(r.randint(0, 9))


def _medium(r: Random) -> str:
    return str(r.randint(0, 20))


def _int_list(r: Random) -> str:
    return repr([r.randint(0, 9) for _ in range(r.randint(2, 4))])


def _word(r: Random) -> str:
    return repr("".join(r.choice("abcde") for _ in range(r.randint(2, 4))))


def _level1(r: Random) -> tuple[str, Callable[[Random], str]]:
    op = r.choice("+-*")
    var = r.choice("xna")
    c = r.randint(1, 9) if op != "*" else r.randint(2, 5)
    body = r.choice((f"{var} {op} {c}", f"{c} {op} {var}")) if op != "-" else f"{var} - {c}"
    return f"def f({var}):\n    return {body}", _small


def _level2(r: Random) -> tuple[str, Callable[[Random], str]]:
    a, b = r.randint(2, 4), r.randint(1, 9)
    body = r.choice((
        f"x * {a} + {b}", f"(x + {b}) * {a}", f"x % {a + 1}", f"max(x, {b})", f"min(x, {b})",
        f"abs(x - {b})", f"x // {a}",
    ))
    return f"def f(x):\n    return {body}", _medium


def _level3(r: Random) -> tuple[str, Callable[[Random], str]]:
    c = r.randint(1, 5)
    choice = r.choice((
        (f"sum(xs) + {c}", _int_list), ("max(xs) - min(xs)", _int_list), ("len(xs) * 2", _int_list),
        ("sorted(xs)[0]", _int_list), (f"[x + {c} for x in xs]", _int_list), ("xs[::-1]", _int_list),
        (f"len([x for x in xs if x > {c}])", _int_list), ("s[::-1]", _word), ("s.upper()", _word),
        ("len(s) + 1", _word),
    ))
    var = "s" if choice[1] is _word else "xs"
    return f"def f({var}):\n    return {choice[0]}", choice[1]


PROGRAMS: dict[int, Template] = {1: _level1, 2: _level2, 3: _level3}


def _expression(r: Random, level: int) -> str:
    if level == 1:
        return f"{r.randint(0, 9)} {r.choice('+-*')} {r.randint(0, 9)}"
    if level == 2:
        return f"{r.randint(0, 9)} {r.choice('+-')} {r.randint(0, 9)} {r.choice('+-*')} {r.randint(0, 9)}"
    op = r.choice(("//", "%"))
    return f"({r.randint(2, 30)} {r.choice('+-')} {r.randint(1, 9)}) {op} {r.randint(2, 6)}"


def generate_task(kind: str, level: int, r: Random, induction_pairs: int = 4) -> Task:
    """One unlabelled task of `kind` at difficulty `level` (1-3)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level}")
    if kind == "math":
        return Task(kind, "", (_expression(r, level),), difficulty=level)
    program, draw = PROGRAMS[level](r)
    count = induction_pairs if kind == "induction" else 1
    inputs: list[str] = []
    for _ in range(20 * count):
        if len(inputs) == count:
            break
        argument = draw(r)
        if argument not in inputs:
            inputs.append(argument)
    return Task(kind, program, tuple(inputs), difficulty=level)


def generate_tasks(
    count_per_cell: int, seed: int, kinds: Iterable[str] = KINDS, levels: Iterable[int] = LEVELS,
    exclude: set[str] | frozenset[str] = frozenset(), induction_pairs: int = 4,
) -> list[Task]:
    """`count_per_cell` distinct tasks for every (kind, level), none whose key is in `exclude`."""
    r = Random(seed)
    tasks: list[Task] = []
    for kind in kinds:
        for level in levels:
            seen: set[str] = set()
            for _ in range(50 * count_per_cell):
                if len(seen) == count_per_cell:
                    break
                task = generate_task(kind, level, r, induction_pairs)
                if task.key not in seen and task.key not in exclude:
                    seen.add(task.key)
                    tasks.append(task)
    return tasks


def curriculum_weights(progress: float, kinds: Iterable[str] = KINDS) -> dict[str, float]:
    """Sampling weight of each kind at `progress` (0..1): math 2/3 early, 1/2, then 1/3 late."""
    kinds = list(kinds)
    math_share = 2 / 3 if progress < 0.2 else 1 / 2 if progress < 0.5 else 1 / 3
    code = [k for k in kinds if k in CODE_KINDS]
    if "math" not in kinds:
        return {k: 1 / len(code) for k in code}
    if not code:
        return {"math": 1.0}
    return {k: math_share if k == "math" else (1 - math_share) / len(code) for k in kinds}


class DifficultyController:
    """Per kind, the level to practise: up when the solve rate is above `raise_above`, down below
    `lower_below`, so practice stays where it is learnable."""

    def __init__(self, kinds: Iterable[str], start: int = 1, raise_above: float = 0.8, lower_below: float = 0.2) -> None:
        self.levels = {kind: start for kind in kinds}
        self.raise_above, self.lower_below = raise_above, lower_below

    def update(self, rates: dict[str, float]) -> None:
        for kind, rate in rates.items():
            if kind not in self.levels:
                continue
            if rate > self.raise_above:
                self.levels[kind] = min(LEVELS[-1], self.levels[kind] + 1)
            elif rate < self.lower_below:
                self.levels[kind] = max(LEVELS[0], self.levels[kind] - 1)
