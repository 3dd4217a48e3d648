"""Token examples and the batches built from them.

An example is a token sequence plus a loss mask chosen by the caller (e.g. True on assistant
tokens only, for loss-on-answer-only). Targets whose mask is False become ``IGNORE_INDEX``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from bitzero.model.transformer import IGNORE_INDEX


@dataclass(frozen=True)
class Example:
    ids: Sequence[int]
    loss_mask: Sequence[bool]
    difficulty: float = 0.0

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.loss_mask):
            raise ValueError(f"ids ({len(self.ids)}) and loss_mask ({len(self.loss_mask)}) differ")
        if len(self.ids) < 2:
            raise ValueError("an example needs at least two tokens (an input and a target)")


ExampleLike = Example | tuple[Sequence[int], Sequence[bool]] | tuple[Sequence[int], Sequence[bool], float]


def as_examples(items: Iterable[ExampleLike]) -> list[Example]:
    """Accept Examples or (ids, loss_mask[, difficulty]) tuples."""
    return [item if isinstance(item, Example) else Example(*item) for item in items]


@dataclass
class Batch:
    """Inputs and targets (B, T); ``n_tokens`` counts real (unpadded) inputs, for throughput.

    ``denominator`` normalises summed per-token losses. The loop sets ``denominator`` to (target tokens over all ranks and micro-batches of the step)
    / world size, so DDP's gradient averaging yields exactly the per-token mean of the global
    batch. ``extras`` carries loss-specific tensors (e.g. PPO's old log-probs and advantages).
    """

    idx: torch.Tensor
    targets: torch.Tensor
    denominator: float = 0.0
    n_tokens: int = 0
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.denominator <= 0:
            self.denominator = float(max(self.n_targets, 1))
        if self.n_tokens <= 0:
            self.n_tokens = self.idx.numel()

    @property
    def n_targets(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.idx.to(device, non_blocking=True),
            self.targets.to(device, non_blocking=True),
            self.denominator,
            self.n_tokens,
            {k: v.to(device, non_blocking=True) for k, v in self.extras.items()},
        )


def _shift(ids: Sequence[int], mask: Sequence[bool]) -> tuple[list[int], list[int]]:
    inputs = list(ids[:-1])
    targets = [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:], strict=True)]
    return inputs, targets


def collate(examples: Sequence[Example], block_size: int, pack: bool = False, pad_id: int = 0) -> Batch:
    """Padded: one row per example, to the longest row. Packed: examples concatenated into rows.

    Padding keeps the LAST block_size + 1 tokens of a long example: with answer-only loss the
    answer sits at the end, and cutting it would leave nothing to learn. Packing lets attention
    cross example boundaries (the usual GPT pretraining trade for full rows).
    """
    if not examples:
        raise ValueError("cannot collate an empty batch")
    if pack:
        stream_ids = [t for ex in examples for t in ex.ids]
        stream_mask = [m for ex in examples for m in ex.loss_mask]
        span = block_size + 1
        rows = [
            _shift(stream_ids[i : i + span], stream_mask[i : i + span])
            for i in range(0, len(stream_ids) - 1, span)
            if len(stream_ids[i : i + span]) >= 2
        ]
    else:
        rows = [_shift(ex.ids[-(block_size + 1) :], ex.loss_mask[-(block_size + 1) :]) for ex in examples]
    width = max(len(inputs) for inputs, _ in rows)
    idx = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for r, (inputs, row_targets) in enumerate(rows):
        idx[r, : len(inputs)] = torch.tensor(inputs, dtype=torch.long)
        targets[r, : len(row_targets)] = torch.tensor(row_targets, dtype=torch.long)
    return Batch(idx, targets, n_tokens=sum(len(inputs) for inputs, _ in rows))
