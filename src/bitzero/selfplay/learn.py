"""Learning from the verifier: supervised steps on executor-verified targets.

This is what gets a near-zero model going (docs/references.md §7): every labelled task carries a
verified answer (the deduction output, the abduction input, the induction program, the math
value), and the solver's own verified-correct samples add more (rejection sampling / expert
iteration). The proposer learns the proposal format from buffer tasks shown with K references.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from random import Random

from tqdm.auto import tqdm

from bitzero.selfplay.agent import Agent
from bitzero.selfplay.buffer import TaskBuffer
from bitzero.selfplay.prompts import Chat, proposer_prompt, solver_prompt
from bitzero.selfplay.tasks import Task, render_proposal, solver_target
from bitzero.train import Trainer
from bitzero.train.batching import Example, collate
from bitzero.train.ddp import any_rank


def solver_examples(agent: Agent, tasks: Sequence[Task], answer_tokens: dict[str, int]) -> list[Example]:
    """The verified target of each task as a supervised example (those within the budgets)."""
    examples = (agent.example(solver_prompt(t), solver_target(t), answer_tokens[t.kind], t.difficulty) for t in tasks)
    return [ex for ex in examples if ex is not None]


def fitting_proposer_prompt(agent: Agent, kind: str, references: list[Task]) -> Chat:
    """The proposer prompt with as many of `references` as fit the agent's prompt budget."""
    shown = list(references)
    while shown and not agent.fits(proposer_prompt(kind, shown)):
        shown.pop()
    return proposer_prompt(kind, shown)


def proposer_examples(
    agent: Agent, buffer: TaskBuffer, kind: str, count: int, references: int, r: Random, proposal_tokens: int
) -> list[Example]:
    """`count` examples of proposing a buffer task of `kind` after up to K other references."""
    examples: list[Example] = []
    for _ in range(count):
        picked = buffer.sample(kind, references + 1, r)
        if len(picked) < 2:
            break
        target, shown = picked[0], picked[1:]
        prompt = fitting_proposer_prompt(agent, kind, shown)
        example = agent.example(prompt, render_proposal(target), proposal_tokens, target.difficulty)
        if example is not None:
            examples.append(example)
    return examples


def sample_mixture(
    buffer: TaskBuffer, weights: dict[str, float], count: int, r: Random,
    levels: dict[str, int] | None = None, up_to: bool = False,
) -> list[Task]:
    """`count` buffer tasks, kinds drawn by `weights`; at (or up to) each kind's level when given."""
    kinds = [k for k in weights if buffer.by_kind[k]]
    if not kinds:
        return []
    drawn = r.choices(kinds, [weights[k] for k in kinds], k=count)
    tasks: list[Task] = []
    for kind in kinds:  # a fixed order: the draw must not depend on string hashing
        if n := drawn.count(kind):
            tasks.extend(buffer.sample(kind, n, r, levels.get(kind) if levels else None, up_to))
    r.shuffle(tasks)
    return tasks


def sft_steps(
    trainer: Trainer, examples: Sequence[Example], steps: int, batch_size: int, r: Random,
    seconds: float | None = None, pad_id: int = 0,
) -> dict[str, float]:
    """Up to `steps` optimizer steps (and at most `seconds`) on batches drawn from `examples`.

    Batches are padded to their longest row, so each batch is drawn from one length bucket
    (bucket chosen in proportion to its size): mixing a 150-token proposer example into a batch
    of 50-token answers would triple the cost of the step for nothing.

    Under torchrun each rank draws its own `batch_size` rows from its own `examples` and DDP
    averages the gradients; the ranks agree on when to stop, since every step is a collective.
    """
    ctx = trainer.ctx
    if any_rank(not examples or steps <= 0, ctx):
        return {"steps": 0.0}
    buckets = length_buckets(examples)
    sizes = [len(bucket) for bucket in buckets]
    block_size = trainer.model.config.block_size
    start = time.perf_counter()
    losses: list[float] = []
    with tqdm(total=steps, desc="supervised (verified targets)", unit="step", disable=not ctx.is_main,
              dynamic_ncols=True) as bar:
        for _ in range(steps):
            if seconds is not None and any_rank(time.perf_counter() - start >= seconds, ctx):
                break
            pool = r.choices(buckets, sizes)[0]
            chosen = r.sample(pool, batch_size) if len(pool) >= batch_size else r.choices(pool, k=batch_size)
            losses.append(trainer.step([collate(chosen, block_size, pad_id=pad_id)])["loss"])
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
            bar.update()
    return {"steps": float(len(losses)), "loss": sum(losses) / len(losses) if losses else float("nan"),
            "seconds": time.perf_counter() - start}


def length_buckets(examples: Sequence[Example], edges: Sequence[int] = (48, 64, 96, 128, 192)) -> list[list[Example]]:
    """Examples grouped by token length (<= each edge, then the rest); empty groups dropped."""
    groups: list[list[Example]] = [[] for _ in range(len(edges) + 1)]
    for example in examples:
        groups[next((i for i, edge in enumerate(edges) if len(example.ids) <= edge), len(edges))].append(example)
    return [group for group in groups if group]
