"""Learning from the verifier: supervised steps on executor-verified targets.

This is what gets a near-zero model going (REFERENCES.md §7): every labelled task carries a
verified answer (the deduction output, the abduction input, the induction program, the math
value), and the solver's own verified-correct samples add more (rejection sampling / expert
iteration). The proposer learns the proposal format from buffer tasks shown with K references.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from random import Random

from bitzero.selfplay.agent import Agent
from bitzero.selfplay.buffer import TaskBuffer
from bitzero.selfplay.tasks import Task, proposer_prompt, render_proposal, solver_prompt, solver_target
from bitzero.train import Trainer
from bitzero.train.batching import Example, collate


def solver_examples(agent: Agent, tasks: Sequence[Task]) -> list[Example]:
    """The verified target of each task as a supervised example (those that fit the block)."""
    examples = (agent.example(solver_prompt(t), solver_target(t), t.difficulty) for t in tasks)
    return [ex for ex in examples if ex is not None]


def proposer_examples(agent: Agent, buffer: TaskBuffer, kind: str, count: int, references: int, r: Random) -> list[Example]:
    """`count` examples of proposing a buffer task of `kind` after K other references."""
    examples: list[Example] = []
    for _ in range(count):
        picked = buffer.sample(kind, references + 1, r)
        if len(picked) < 2:
            break
        target, shown = picked[0], picked[1:]
        example = agent.example(proposer_prompt(kind, shown), render_proposal(target), target.difficulty)
        if example is not None:
            examples.append(example)
    return examples


def sample_mixture(buffer: TaskBuffer, weights: dict[str, float], count: int, r: Random, levels: dict[str, int] | None = None) -> list[Task]:
    """`count` buffer tasks, kinds drawn by `weights`; a kind's practice level when given."""
    kinds = [k for k in weights if buffer.by_kind[k]]
    if not kinds:
        return []
    drawn = r.choices(kinds, [weights[k] for k in kinds], k=count)
    tasks: list[Task] = []
    for kind in set(drawn):
        level = levels.get(kind) if levels else None
        tasks.extend(buffer.sample(kind, drawn.count(kind), r, level))
    r.shuffle(tasks)
    return tasks


def sft_steps(
    trainer: Trainer, examples: Sequence[Example], steps: int, batch_size: int, r: Random,
    seconds: float | None = None, pad_id: int = 0,
) -> dict[str, float]:
    """Up to `steps` optimizer steps (and at most `seconds`) on batches drawn from `examples`."""
    if not examples or steps <= 0:
        return {"steps": 0.0}
    block_size = trainer.model.config.block_size
    start = time.perf_counter()
    losses: list[float] = []
    for _ in range(steps):
        if seconds is not None and time.perf_counter() - start >= seconds:
            break
        chosen = r.sample(list(examples), batch_size) if len(examples) >= batch_size else r.choices(examples, k=batch_size)
        losses.append(trainer.step([collate(chosen, block_size, pad_id=pad_id)])["loss"])
    return {"steps": float(len(losses)), "loss": sum(losses) / len(losses) if losses else float("nan"),
            "seconds": time.perf_counter() - start}
