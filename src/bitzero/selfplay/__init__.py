"""Absolute-Zero-style self-play: propose programs, verify them in a sandbox, solve, reward.

`run_experiment` is the stage: cold-start buffers from the generator, supervised learning on
executor-verified targets, then self-play with PPO (and, for the ablation, without) at equal
wall time, with held-out solve rates before and after.
"""

from bitzero.selfplay.config import SelfPlayConfig
from bitzero.selfplay.experiment import Outcome, run_experiment
from bitzero.selfplay.policy import PolicyViolation, check_program
from bitzero.selfplay.sandbox import ExecResult, Failure, Sandbox, SandboxUnavailable, values_equal
from bitzero.selfplay.tasks import KINDS, FormatError, Task

__all__ = [
    "KINDS",
    "ExecResult",
    "Failure",
    "FormatError",
    "Outcome",
    "PolicyViolation",
    "Sandbox",
    "SandboxUnavailable",
    "SelfPlayConfig",
    "Task",
    "check_program",
    "run_experiment",
    "values_equal",
]
