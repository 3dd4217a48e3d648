"""Held-out solve rates: greedy answers, verified, per kind, with 95% Wilson intervals."""

from __future__ import annotations

import math
from collections import defaultdict

from bitzero.selfplay.agent import Agent
from bitzero.selfplay.tasks import Task, solver_prompt
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


def rate_entry(successes: int, n: int) -> dict[str, float | int | list[float]]:
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
    """Greedy solve rate per kind and overall on `tasks` (the model is only read); under torchrun
    each rank answers a share and every rank gets the whole report."""
    correct = map_sharded(lambda part: solved(agent, verifier, part, answer_tokens), tasks, ctx)
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for task, ok in zip(tasks, correct, strict=True):
        by_kind[task.kind].append(ok)
    report: dict = {kind: rate_entry(sum(oks), len(oks)) for kind, oks in sorted(by_kind.items())}
    report["overall"] = rate_entry(sum(correct), len(tasks))
    return report
