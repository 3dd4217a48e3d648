"""Held-out solve rates: greedy answers, verified, per kind, with 95% Wilson intervals."""

from __future__ import annotations

import math
from collections import defaultdict

from bitzero.selfplay.agent import Agent
from bitzero.selfplay.tasks import Task, solver_prompt
from bitzero.selfplay.verify import CORRECT, Verifier


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial rate (sane at 0 and at n, unlike the normal one)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_entry(successes: int, n: int) -> dict[str, float | int | list[float]]:
    low, high = wilson_interval(successes, n)
    return {"rate": successes / n if n else 0.0, "solved": successes, "tasks": n, "ci95": [low, high]}


def solve_rates(agent: Agent, verifier: Verifier, tasks: list[Task], answer_tokens: dict[str, int]) -> dict:
    """Greedy solve rate per kind and overall on `tasks` (the model is only read)."""
    by_kind: dict[str, list[Task]] = defaultdict(list)
    for task in tasks:
        by_kind[task.kind].append(task)
    report: dict = {}
    solved_total = 0
    for kind, group in sorted(by_kind.items()):
        completions = agent.sample([solver_prompt(t) for t in group], answer_tokens[kind], temperature=0.0)
        answers = [c.text if c.finished else "" for c in completions]
        solved = sum(r == CORRECT for r in verifier.score(group, answers))
        solved_total += solved
        report[kind] = rate_entry(solved, len(group))
    report["overall"] = rate_entry(solved_total, len(tasks))
    return report
