"""Held-out NLL per assistant token of an exported bundle, through onnxruntime (torch-free).

The figure the promotion gate compares: each validation conversation is encoded with the bundle's
own tokenizer and chat template; only the assistant's contents and their end-of-turn tokens are
scored (what a companion says, not what it is told), overall and per record ``source``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

import numpy as np
from tqdm import tqdm

from bitzero.serving.runtime import BundleRuntime
from bitzero.text import Tokenizer


@dataclass(frozen=True)
class Scored:
    """One conversation's ids, its assistant mask (True: a scored target) and where it came from."""

    ids: list[int]
    mask: list[bool]
    source: str


def by_source_in_turn(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Records reordered one source at a time in turn (each source's own order kept), so the first
    few cover every source rather than the first one only."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        groups[str(record.get("source") or "unknown")].append(record)
    rounds = zip_longest(*groups.values())
    return [record for row in rounds for record in row if record is not None]


def scored_conversations(
    records: Iterable[Mapping[str, Any]], tokenizer: Tokenizer, limit: int, max_tokens: int
) -> list[Scored]:
    """Up to ``limit`` records (sources in turn) with an assistant token in their first ``max_tokens`` ids."""
    scored: list[Scored] = []
    for record in by_source_in_turn(records):
        if len(scored) == limit:
            break
        ids, mask = tokenizer.encode_chat_with_mask(record.get("conversation") or [])
        ids, mask = ids[:max_tokens], mask[:max_tokens]
        if any(mask[1:]):
            scored.append(Scored(ids, mask, str(record.get("source") or "unknown")))
    return scored


def _token_nlls(runtime: BundleRuntime, item: Scored) -> np.ndarray:
    logits, _ = runtime.forward(item.ids[:-1])
    logits = logits.astype(np.float64)
    top = logits.max(-1, keepdims=True)
    log_norm = np.log(np.exp(logits - top).sum(-1)) + top[:, 0]
    targets = np.asarray(item.ids[1:])
    nll = log_norm - logits[np.arange(len(targets)), targets]
    return nll[np.asarray(item.mask[1:])]


def assistant_nll(runtime: BundleRuntime, scored: list[Scored]) -> dict[str, Any]:
    """Mean NLL per assistant token (nats), overall and per source, with the token counts."""
    if not scored:
        raise ValueError("no held-out conversation with an assistant turn to score")
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for item in tqdm(scored, desc=f"held-out NLL ({runtime.variant})", unit="conversation"):
        nll = _token_nlls(runtime, item)
        sums[item.source] += float(nll.sum())
        counts[item.source] += int(nll.size)
    tokens = sum(counts.values())
    return {
        "overall": sum(sums.values()) / tokens,
        "per_source": {s: sums[s] / counts[s] for s in sorted(sums)},
        "tokens": tokens,
        "tokens_per_source": dict(sorted(counts.items())),
        "conversations": len(scored),
        "variant": runtime.variant,
    }
