"""Ranking and consolidation of memories: Generative Agents retrieval and mem0/Zep-style updates.

Retrieval score = recency + importance + relevance, each min-max scaled to [0, 1] over the
candidates; recency decays 0.995 per hour since the memory was last accessed. Consolidation
never overwrites a contradicted memory: it is invalidated and points at its successor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from bitzero.companion.extraction import Candidate

RECENCY_DECAY = 0.995  # per hour
MERGE_THRESHOLD = 0.85  # cosine above which two memories of one category say the same thing
# Weights of (recency, importance, relevance). Generative Agents uses 1/1/1 over a long stream of
# observations; over a companion's few dozen memories min-max importance and recency swamp
# relevance (hit@1 0.54 on benchmarks/service_bench.py's labelled questions), so relevance
# counts three times (hit@1 0.83, hit@3 1.00); recency and importance still break near-ties.
WEIGHTS = (1.0, 1.0, 3.0)


@dataclass
class StoredMemory:
    """The fields ranking and consolidation need (the service maps its rows onto this)."""

    id: str
    category: str
    slot: str | None
    content: str
    importance: float
    vector: np.ndarray
    last_accessed: datetime


def _minmax(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def retrieval_scores(
    query: np.ndarray,
    memories: Sequence[StoredMemory],
    now: datetime,
    weights: tuple[float, float, float] = WEIGHTS,
) -> np.ndarray:
    """Generative Agents score of each memory for the (normalised) query vector."""
    if not memories:
        return np.zeros(0)
    hours = np.array([max((now - m.last_accessed).total_seconds(), 0.0) / 3600 for m in memories])
    recency = RECENCY_DECAY**hours
    importance = np.array([m.importance for m in memories], dtype=np.float64)
    relevance = np.stack([m.vector for m in memories]).astype(np.float64) @ query.astype(np.float64)
    w_rec, w_imp, w_rel = weights
    return w_rec * _minmax(recency) + w_imp * _minmax(importance) + w_rel * _minmax(relevance)


def rank(
    query: np.ndarray, memories: Sequence[StoredMemory], now: datetime, limit: int
) -> list[tuple[StoredMemory, float]]:
    """The ``limit`` best memories for the query, best first (ties keep the input order)."""
    scores = retrieval_scores(query, memories, now)
    order = np.argsort(-scores, kind="stable")[:limit]
    return [(memories[i], float(scores[i])) for i in order]


@dataclass(frozen=True)
class Decision:
    """What to do with a new candidate: add it, merge it into ``target``, or let it supersede ``target``."""

    action: str  # "add" | "merge" | "supersede" | "keep"
    target: StoredMemory | None = None
    content: str = ""
    importance: float = 0.0


def consolidate(
    candidate: Candidate, vector: np.ndarray, existing: Sequence[StoredMemory], threshold: float = MERGE_THRESHOLD
) -> Decision:
    """Decide how a new candidate joins the user's valid memories.

    Same slot, same meaning: keep the old one (refreshed). Same slot, other value: the old one is
    contradicted, so the new one supersedes it. Otherwise a near-duplicate of the same category
    merges (the more informative text survives, importance is the larger); else it is added.
    """
    same_slot = [m for m in existing if candidate.slot is not None and m.slot == candidate.slot]
    for memory in same_slot:
        if memory.content.strip().lower() == candidate.content.strip().lower():
            return Decision("keep", memory, memory.content, max(memory.importance, candidate.importance))
    if same_slot:
        return Decision("supersede", same_slot[0], candidate.content, candidate.importance)
    peers = [m for m in existing if m.category == candidate.category]
    if peers:
        similarity = np.stack([m.vector for m in peers]) @ vector
        best = int(np.argmax(similarity))
        if similarity[best] >= threshold:
            target = peers[best]
            content = max((target.content, candidate.content), key=len)
            return Decision("merge", target, content, max(target.importance, candidate.importance))
    return Decision("add", None, candidate.content, candidate.importance)
