"""Held-out NLL per assistant token, overall and per data source: the figure every model of the
distillation stage (teacher, PTQ, student, CE-only) is compared on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bitzero.model import BitZeroLM
from bitzero.train.batching import Example
from bitzero.train.loop import nll_totals


def held_out_nll(
    model: BitZeroLM,
    sets: Mapping[str, Sequence[Example]],
    batch_size: int,
    seq_len: int | None,
    pad_id: int = 0,
) -> dict[str, Any]:
    """{"overall": nats per target token over all sets, "sources": {name: nats}, "tokens": n}."""
    sources: dict[str, float] = {}
    total, count = 0.0, 0
    for name, examples in sets.items():
        loss, n = nll_totals(model, examples, batch_size, pad_id=pad_id, seq_len=seq_len)
        if n:
            sources[name] = loss / n
        total, count = total + loss, count + n
    if not count:
        raise ValueError("the held-out sets have no target tokens")
    return {"overall": total / count, "sources": sources, "tokens": count}
