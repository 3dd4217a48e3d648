"""Vocabulary check: exact figures on hand-made texts, and the coverage error."""

import pytest

from bitzero.text import Tokenizer, VocabularyCoverageError, check_vocabulary
from tests.tiny import tiny_tokenizer

# "clean": all characters merge into whole tokens; "mixed": three 中 and one 🦩, which the tiny
# byte-level vocabulary splits into partial UTF-8 bytes (3 and 4 tokens).
TEXTS = {"clean": ["hello", "hi"], "mixed": ["ab中", "中🦩中yz"]}


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return tiny_tokenizer()


def test_figures_per_source_and_overall(tok):
    report = check_vocabulary(TEXTS, tok, min_coverage=0.0, examples=2)
    clean, mixed, overall = report["sources"]["clean"], report["sources"]["mixed"], report["overall"]
    assert (clean["records"], clean["characters"], clean["coverage"]) == (2, 7, 1.0)
    assert clean["tokens_per_char"] == (len(tok.encode("hello")) + len(tok.encode("hi"))) / 7
    assert clean["unknown_characters"] == [] and clean["emoji"] == {"count": 0, "tokens_per_emoji": 0.0}

    assert (mixed["characters"], mixed["unknown_count"]) == (8, 4)
    assert mixed["coverage"] == 4 / 8
    assert mixed["emoji"] == {"count": 1, "tokens_per_emoji": 4.0}
    assert mixed["unknown_characters"] == [
        {"char": "中", "codepoint": "U+4E2D", "count": 3, "examples": ["ab中", "中🦩中yz"]},
        {"char": "🦩", "codepoint": "U+1F9A9", "count": 1, "examples": ["中🦩中yz"]},
    ]
    assert (overall["records"], overall["characters"], overall["unknown_count"]) == (4, 15, 4)
    assert overall["coverage"] == 11 / 15 and overall["round_trip_failures"] == 0
    assert overall["unknown_characters"][0]["count"] == 3


def test_examples_are_short_snippets_and_limited(tok):
    text = "x" * 100 + "中" + "y" * 100 + "中"
    report = check_vocabulary({"s": [text, text, text]}, tok, min_coverage=0.0, examples=5)
    entry = report["overall"]["unknown_characters"][0]
    assert entry["count"] == 6 and len(entry["examples"]) == 5
    assert entry["examples"][0] == "x" * 20 + "中" + "y" * 20


def test_empty_source_counts_as_covered(tok):
    report = check_vocabulary({"empty": [], "blank": [""]}, tok, min_coverage=1.0)
    assert report["sources"]["empty"]["coverage"] == 1.0
    assert report["overall"]["characters"] == 0 and report["overall"]["tokens_per_char"] == 0.0


def test_coverage_error_names_failing_sources(tok):
    with pytest.raises(VocabularyCoverageError) as caught:
        check_vocabulary(TEXTS, tok, min_coverage=0.75)
    message = str(caught.value)
    assert "'mixed'" in message and "0.5000" in message and "U+4E2D" in message
    assert "overall: coverage 0.7333" in message
    assert "'clean'" not in message
    assert caught.value.report["sources"]["clean"]["coverage"] == 1.0


def test_only_a_source_below_threshold_still_fails(tok):
    texts = {"big": ["a" * 1000], "small": ["中"]}
    with pytest.raises(VocabularyCoverageError, match="'small'") as caught:
        check_vocabulary(texts, tok, min_coverage=0.99)
    assert "overall" not in str(caught.value)


def test_passes_at_threshold(tok):
    assert check_vocabulary(TEXTS, tok, min_coverage=0.5)["sources"]["mixed"]["coverage"] == 0.5


def test_rejects_threshold_outside_unit_interval(tok):
    with pytest.raises(ValueError):
        check_vocabulary(TEXTS, tok, min_coverage=1.5)
