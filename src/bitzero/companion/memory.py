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
    """One memory as ranking and consolidation see it."""

    id: str
    category: str
    slot: str | None
    content: str
    importance: float
    vector: np.ndarray
    last_accessed: datetime


@dataclass
class MemoryIndex:
    """A user's valid memories as columns: one matrix of vectors, so scoring 10,000 is one product."""

    ids: list[str]
    categories: list[str]
    slots: list[str | None]
    contents: list[str]
    importance: np.ndarray
    last_accessed: list[datetime]
    vectors: np.ndarray

    @classmethod
    def build(cls, memories: Sequence[StoredMemory], dimensions: int = 384) -> MemoryIndex:
        vectors = np.stack([m.vector for m in memories]) if memories else np.zeros((0, dimensions), np.float32)
        return cls([m.id for m in memories], [m.category for m in memories], [m.slot for m in memories],
                   [m.content for m in memories], np.array([m.importance for m in memories], dtype=np.float64),
                   [m.last_accessed for m in memories], vectors.astype(np.float32))

    def __len__(self) -> int:
        return len(self.ids)

    def memory(self, i: int) -> StoredMemory:
        return StoredMemory(self.ids[i], self.categories[i], self.slots[i], self.contents[i],
                            float(self.importance[i]), self.vectors[i], self.last_accessed[i])


def _minmax(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def retrieval_scores(
    query: np.ndarray, index: MemoryIndex, now: datetime, weights: tuple[float, float, float] = WEIGHTS
) -> np.ndarray:
    """Generative Agents score of each memory for the (normalised) query vector."""
    if not len(index):
        return np.zeros(0)
    hours = np.array([(now - t).total_seconds() for t in index.last_accessed]).clip(min=0) / 3600
    recency = RECENCY_DECAY**hours
    relevance = index.vectors.astype(np.float64) @ query.astype(np.float64)
    w_rec, w_imp, w_rel = weights
    return w_rec * _minmax(recency) + w_imp * _minmax(index.importance) + w_rel * _minmax(relevance)


def rank(query: np.ndarray, index: MemoryIndex, now: datetime, limit: int) -> list[tuple[int, float]]:
    """Positions and scores of the ``limit`` best memories, best first (ties keep index order)."""
    scores = retrieval_scores(query, index, now)
    if len(scores) > limit:
        top = np.argpartition(-scores, limit - 1)[:limit]
        order = top[np.lexsort((top, -scores[top]))]
    else:
        order = np.argsort(-scores, kind="stable")
    return [(int(i), float(scores[i])) for i in order]


@dataclass(frozen=True)
class Decision:
    """What to do with a new candidate: add it, merge it into ``target``, or let it supersede ``target``."""

    action: str  # "add" | "merge" | "supersede" | "keep"
    target: StoredMemory | None = None
    content: str = ""
    importance: float = 0.0


def consolidate(
    candidate: Candidate, vector: np.ndarray, index: MemoryIndex, threshold: float = MERGE_THRESHOLD
) -> Decision:
    """Decide how a new candidate joins the user's valid memories.

    Same slot, same meaning: keep the old one (refreshed). Same slot, other value: the old one is
    contradicted, so the new one supersedes it. Otherwise a near-duplicate of the same category
    merges (the more informative text survives, importance is the larger); else it is added.
    """
    same_slot = [i for i, slot in enumerate(index.slots) if candidate.slot is not None and slot == candidate.slot]
    for i in same_slot:
        if index.contents[i].strip().lower() == candidate.content.strip().lower():
            return Decision("keep", index.memory(i), index.contents[i], float(max(index.importance[i], candidate.importance)))
    if same_slot:
        return Decision("supersede", index.memory(same_slot[0]), candidate.content, candidate.importance)
    peers = np.array([c == candidate.category for c in index.categories], dtype=bool)
    if peers.any():
        similarity = np.where(peers, index.vectors @ vector, -np.inf)
        best = int(np.argmax(similarity))
        if similarity[best] >= threshold:
            target = index.memory(best)
            content = max((target.content, candidate.content), key=len)
            return Decision("merge", target, content, max(target.importance, candidate.importance))
    return Decision("add", None, candidate.content, candidate.importance)
