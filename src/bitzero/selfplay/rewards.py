"""Absolute Zero's rewards and Task-Relative REINFORCE++ advantages (docs/references.md §3.2).

Solver: 1 when the verified answer is correct, 0 when wrong, -1 when it has no valid shape.
Proposer: -1 for a proposal the executor rejects; otherwise its learnability, 1 - the mean solve
rate over n solver samples, and 0 when that rate is 0 or 1 (a task nobody or everybody solves
teaches nothing). Advantages are rewards normalised within each (task kind, role) group, so
six-odd baselines replace a critic; raw rewards never reach the surrogate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

from bitzero.selfplay.verify import CORRECT, FORMAT_ERROR


def solve_rate(rewards: Sequence[float]) -> float:
    """Fraction of samples judged correct."""
    if not rewards:
        raise ValueError("a solve rate needs at least one sample")
    return sum(r == CORRECT for r in rewards) / len(rewards)


def learnability(rate: float) -> float:
    """1 - rate, and 0 when the rate is 0 or 1."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a solve rate lies in [0, 1], got {rate}")
    return 0.0 if rate in (0.0, 1.0) else 1.0 - rate


def proposer_reward(valid: bool, rate: float | None) -> float:
    """-1 for an invalid proposal, else the learnability of its solve rate."""
    if not valid:
        return FORMAT_ERROR
    if rate is None:
        raise ValueError("a valid proposal needs the solve rate of its samples")
    return learnability(rate)


def task_relative_advantages(
    rewards: Sequence[float], groups: Sequence[Hashable], eps: float = 1e-6
) -> list[float]:
    """(r - group mean) / (group std + eps) per group; a group with no spread gets 0 (no signal)."""
    if len(rewards) != len(groups):
        raise ValueError("one group per reward")
    members: dict[Hashable, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    advantages = [0.0] * len(rewards)
    for indices in members.values():
        values = np.asarray([rewards[i] for i in indices], dtype=np.float64)
        std = float(values.std())
        if len(indices) < 2 or std < eps:
            continue
        for i, value in zip(indices, (values - values.mean()) / (std + eps), strict=True):
            advantages[i] = float(value)
    return advantages
