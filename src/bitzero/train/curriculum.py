"""Easy-to-hard sampling: the pool of examples to draw from grows over the run.

Every rank draws the same global batch (same seeded generator) and keeps its own slice, so a
sharded run sees exactly the examples a single process would (what DistributedSampler does for
epochs, here for step-based sampling).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch

from bitzero.train.batching import Example


class CurriculumSampler:
    """Samples global batches from the easiest ``pool_size(step)`` examples.

    Easiness is (difficulty, length); ``start`` = 1.0 turns the curriculum off (uniform over all).
    """

    def __init__(
        self,
        examples: Sequence[Example],
        total_steps: int,
        start: float = 1.0,
        growth: float = 0.5,
        seed: int = 0,
    ) -> None:
        if not examples:
            raise ValueError("the training set is empty")
        self.order = sorted(
            range(len(examples)), key=lambda i: (examples[i].difficulty, len(examples[i].ids), i)
        )
        self.total_steps = total_steps
        self.start = start
        self.growth = growth
        self.generator = torch.Generator().manual_seed(seed)

    def pool_size(self, step: int) -> int:
        """Examples eligible at ``step``: the easiest start fraction, growing linearly to all."""
        n = len(self.order)
        horizon = max(self.growth * self.total_steps, 1e-9)
        fraction = self.start + (1.0 - self.start) * min(1.0, step / horizon)
        return max(1, min(n, round(fraction * n)))

    def sample(self, step: int, batch_size: int) -> list[int]:
        """Indices (into the original examples) of one global batch; distinct when the pool allows."""
        pool = self.pool_size(step)
        if batch_size <= pool:
            picks = torch.randperm(pool, generator=self.generator)[:batch_size]
        else:
            picks = torch.randint(pool, (batch_size,), generator=self.generator)
        return [self.order[i] for i in picks.tolist()]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


T = TypeVar("T")


def shard(indices: Sequence[T], rank: int, world_size: int) -> list[T]:
    """This rank's share of a global batch (strided, so shares differ by at most one)."""
    return list(indices[rank::world_size])
