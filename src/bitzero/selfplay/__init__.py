"""Absolute-Zero-style self-play: propose programs, verify them in a sandbox, solve, reward."""

from bitzero.selfplay.policy import PolicyViolation, check_program
from bitzero.selfplay.sandbox import ExecResult, Sandbox, SandboxUnavailable, values_equal

__all__ = ["ExecResult", "PolicyViolation", "Sandbox", "SandboxUnavailable", "check_program", "values_equal"]
