"""The verifier: the executor labels tasks and judges answers, and counts what it rejected.

Labelling runs every call of a task twice in different interpreters (`check_deterministic_many`)
and keeps the task only if all runs agree and give a short literal; the outputs it records are
the only ground truth in self-play. Judging compares Python values (`values_equal`, never
`eval`); abduction and induction answers are themselves run in the sandbox.
"""

from __future__ import annotations

import ast
import math
import time
from collections import Counter
from dataclasses import dataclass, field

from bitzero.selfplay.prompts import extract_answer
from bitzero.selfplay.sandbox import ExecResult, Sandbox, values_equal
from bitzero.selfplay.tasks import FormatError, Task

CORRECT, WRONG, FORMAT_ERROR = 1.0, 0.0, -1.0


@dataclass
class SandboxStats:
    """Programs the sandbox ran and the wall time spent in it (for programs per second)."""

    programs: int = 0
    seconds: float = 0.0
    rejections: Counter = field(default_factory=Counter)

    @property
    def programs_per_s(self) -> float:
        return self.programs / self.seconds if self.seconds > 0 else 0.0


class Verifier:
    """Labels tasks and scores answers with one sandbox; `stats` accumulates over calls."""

    def __init__(self, sandbox: Sandbox, max_output_chars: int = 40) -> None:
        self.sandbox = sandbox
        self.max_output_chars = max_output_chars
        self.stats = SandboxStats()

    def _run(self, items: list[tuple[str, str]], deterministic: bool) -> list[ExecResult]:
        if not items:
            return []
        start = time.perf_counter()
        runner = self.sandbox.check_deterministic_many if deterministic else self.sandbox.run_many
        results = runner(items)
        self.stats.seconds += time.perf_counter() - start
        self.stats.programs += len(items) * (2 if deterministic else 1)
        return results

    def label(self, tasks: list[Task]) -> tuple[list[Task | None], list[str | None]]:
        """Each task with executor outputs, or None and the reason it was rejected."""
        items = [(task.program, call) for task in tasks for call in task.calls()]
        results = iter(self._run(items, deterministic=True))
        labelled: list[Task | None] = []
        reasons: list[str | None] = []
        for task in tasks:
            runs = [next(results) for _ in task.calls()]
            failed = next((r for r in runs if not r.ok), None)
            reason = failed.reason if failed is not None else self._shape_problem(task, runs)
            if reason is None:
                labelled.append(task.labelled([r.value_repr for r in runs]))
            else:
                labelled.append(None)
                self.stats.rejections[str(failed.failure) if failed is not None else reason] += 1
            reasons.append(reason)
        return labelled, reasons

    def _shape_problem(self, task: Task, runs: list[ExecResult]) -> str | None:
        if any(len(r.value_repr) > self.max_output_chars for r in runs):
            return "output too long"
        if task.kind == "math":
            value = runs[0].value
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return "math answer is not a finite number"
        if task.kind == "induction" and len({r.value_repr for r in runs}) < 2:
            return "induction outputs are all the same"
        return None

    def score(self, tasks: list[Task], answers: list[str]) -> list[float]:
        """Solver rewards for assistant replies: 1 correct, 0 wrong, -1 when no answer of a valid
        shape can be read from the reply."""
        rewards: list[float | None] = []
        pending: list[tuple[int, str, str, str]] = []  # (answer index, program, call, expected repr)
        for index, (task, text) in enumerate(zip(tasks, answers, strict=True)):
            try:
                answer = extract_answer(task.kind, text)
            except FormatError:
                rewards.append(FORMAT_ERROR)
                continue
            if task.kind == "deduction":
                rewards.append(CORRECT if values_equal(answer, task.outputs[0]) else WRONG)
            elif task.kind == "math":
                rewards.append(CORRECT if numbers_equal(answer, task.outputs[0]) else WRONG)
            elif task.kind == "abduction":
                rewards.append(None)
                pending.append((index, task.program, f"f({answer})", task.outputs[0]))
            else:
                rewards.append(None)
                hidden = range(task.visible(), len(task.inputs))
                pending.extend((index, answer, f"f({task.inputs[i]})", task.outputs[i]) for i in hidden)
        results = self._run([(program, call) for _, program, call, _ in pending], deterministic=False)
        passed: dict[int, bool] = {}
        for (index, _, _, expected), result in zip(pending, results, strict=True):
            ok = result.ok and values_equal(result.value_repr, expected)
            passed[index] = passed.get(index, True) and ok
        return [CORRECT if passed.get(i) else WRONG if r is None else r for i, r in enumerate(rewards)]


def numbers_equal(answer: str, expected: str, tolerance: float = 1e-6) -> bool:
    """Math answers agree as numbers (4 == 4.0), not as types; anything else compares as values."""
    try:
        a, b = ast.literal_eval(answer), ast.literal_eval(expected)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    numeric = (int, float)
    if isinstance(a, numeric) and isinstance(b, numeric) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
    return values_equal(a, b)

