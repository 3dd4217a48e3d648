"""Find the largest micro-batch that fits in accelerator memory, keeping a reserve.

The search only needs a ``try_step(batch_size)`` callable that raises ``torch.OutOfMemoryError``
when a batch does not fit, so it is tested on CPU with a fake.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bitzero.errors import TrainingError


class BatchSizeError(TrainingError, RuntimeError):
    """Not even a batch of one fits in memory."""


def find_batch_size(
    try_step: Callable[[int], None],
    limit: int,
    start: int = 1,
    memory_fraction: Callable[[], float] | None = None,
    reserve: float = 0.1,
    on_oom: Callable[[], None] | None = None,
) -> int:
    """Double from ``start`` up to ``limit`` while steps fit; back off (halve) on OOM.

    A size also counts as not fitting when, after its step, ``memory_fraction()`` (peak use / total)
    leaves less than ``reserve`` free: fragmentation and longer real batches need headroom.
    ``on_oom`` frees memory after a failure (e.g. ``torch.cuda.empty_cache``).
    """

    def fits(size: int) -> bool:
        try:
            try_step(size)
        except torch.OutOfMemoryError:
            if on_oom is not None:
                on_oom()
            return False
        return memory_fraction is None or memory_fraction() <= 1.0 - reserve

    size = max(1, min(start, limit))
    while not fits(size):
        if size == 1:
            raise BatchSizeError("a micro-batch of 1 does not fit in memory with the reserve kept")
        size //= 2
    best = size
    while best < limit:
        candidate = min(best * 2, limit)
        if not fits(candidate):
            break
        best = candidate
    return best
