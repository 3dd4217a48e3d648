"""Rewards and task-relative advantages against hand computation."""

import math

import pytest

from bitzero.selfplay.rewards import learnability, proposer_reward, solve_rate, task_relative_advantages


def test_solver_and_proposer_rewards_by_hand():
    assert solve_rate([1.0, 0.0, -1.0, 1.0]) == 0.5  # a format error is not a solve
    assert learnability(0.25) == 0.75
    assert learnability(0.0) == 0.0 and learnability(1.0) == 0.0  # nothing to learn at either end
    assert proposer_reward(False, None) == -1.0
    assert proposer_reward(True, 0.5) == 0.5 and proposer_reward(True, 1.0) == 0.0
    with pytest.raises(ValueError):
        learnability(1.5)


def test_advantages_are_normalised_within_each_kind_and_role():
    rewards = [1.0, 0.0, 0.0, 0.0, 0.5, -1.0, 1.0, 1.0]
    groups = [("math", "solve")] * 4 + [("math", "propose")] * 2 + [("deduction", "solve")] * 2
    advantages = task_relative_advantages(rewards, groups)
    # math/solve: mean 0.25, population std sqrt(0.1875)
    std = math.sqrt(0.1875)
    assert advantages[:4] == pytest.approx([0.75 / std, -0.25 / std, -0.25 / std, -0.25 / std], rel=1e-5)
    assert advantages[4:6] == pytest.approx([1.0, -1.0], rel=1e-5)  # mean -0.25, std 0.75
    assert advantages[6:] == [0.0, 0.0]  # no spread, no signal
    assert sum(advantages[:4]) == pytest.approx(0.0, abs=1e-9)
