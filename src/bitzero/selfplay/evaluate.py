"""Held-out solve rates: greedy answers, verified, per kind and level, with 95% Wilson intervals."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from bitzero.selfplay.agent import Agent
from bitzero.selfplay.prompts import solver_prompt
from bitzero.selfplay.tasks import Task
from bitzero.selfplay.verify import CORRECT, Verifier
from bitzero.train.ddp import DistContext, map_sharded


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial rate (sane at 0 and at n, unlike the normal one)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_entry(successes: int, n: int) -> dict[str, Any]:
    low, high = wilson_interval(successes, n)
    return {"rate": successes / n if n else 0.0, "solved": successes, "tasks": n, "ci95": [low, high]}


def solved(agent: Agent, verifier: Verifier, tasks: list[Task], answer_tokens: dict[str, int]) -> list[bool]:
    """Whether the greedy answer to each task is correct (batched per kind: one token budget each)."""
    by_kind: dict[str, list[int]] = defaultdict(list)
    for i, task in enumerate(tasks):
        by_kind[task.kind].append(i)
    correct = [False] * len(tasks)
    for kind, indices in by_kind.items():
        group = [tasks[i] for i in indices]
        completions = agent.sample([solver_prompt(t) for t in group], answer_tokens[kind], temperature=0.0)
        answers = [c.text if c.finished else "" for c in completions]
        for i, reward in zip(indices, verifier.score(group, answers), strict=True):
            correct[i] = reward == CORRECT
    return correct


def solve_rates(agent: Agent, verifier: Verifier, tasks: list[Task], answer_tokens: dict[str, int],
                ctx: DistContext = DistContext()) -> dict:
    """Greedy solve rate per kind and overall on `tasks`, each also per level (the model is only
    read); under torchrun each rank answers a share and every rank gets the whole report."""
    correct = map_sharded(lambda part: solved(agent, verifier, part, answer_tokens), tasks, ctx)
    by_kind: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for task, ok in zip(tasks, correct, strict=True):
        by_kind[task.kind].append((task.difficulty, ok))
    report: dict = {kind: leveled_entry(results) for kind, results in sorted(by_kind.items())}
    report["overall"] = leveled_entry([(t.difficulty, ok) for t, ok in zip(tasks, correct, strict=True)])
    return report


def leveled_entry(results: list[tuple[int, bool]]) -> dict:
    """The rate of (level, correct) results, and under "levels" the rate at each level."""
    levels: dict[int, list[bool]] = defaultdict(list)
    for level, ok in results:
        levels[level].append(ok)
    entry = rate_entry(sum(ok for _, ok in results), len(results))
    entry["levels"] = {str(level): rate_entry(sum(oks), len(oks)) for level, oks in sorted(levels.items())}
    return entry
