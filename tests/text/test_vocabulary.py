"""Vocabulary check: exact figures on hand-made texts, and the coverage error."""

import pytest

from bitzero.text import Tokenizer, VocabularyCoverageError, check_vocabulary

# "clean": 4 + 2 characters, all known; "a==b" is 3 tokens with the "==" subword.
# "mixed": 3 + 5 characters, three of them 中 (3 UTF-8 bytes each) and one 🦩 (4 bytes).
TEXTS = {"clean": ["a==b", "hi"], "mixed": ["ab中", "中🦩中yz"]}


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.default()


def test_figures_per_source_and_overall(tok):
    report = check_vocabulary(TEXTS, tok, min_coverage=0.0, examples=2)
    clean, mixed, overall = report["sources"]["clean"], report["sources"]["mixed"], report["overall"]
    assert (clean["records"], clean["characters"], clean["coverage"]) == (2, 6, 1.0)
    assert clean["tokens_per_char"] == 5 / 6
    assert clean["tokens_per_char_chars_only"] == 1.0
    assert clean["unknown_characters"] == []

    assert (mixed["characters"], mixed["unknown_count"]) == (8, 4)
    assert mixed["coverage"] == 4 / 8
    # Known characters 4 tokens, 中 3 x 3 bytes, 🦩 4 bytes: 17 tokens either way (no subwords hit).
    assert mixed["tokens_per_char"] == mixed["tokens_per_char_chars_only"] == 17 / 8
    assert mixed["unknown_characters"] == [
        {"char": "中", "codepoint": "U+4E2D", "count": 3, "examples": ["ab中", "中🦩中yz"]},
        {"char": "🦩", "codepoint": "U+1F9A9", "count": 1, "examples": ["中🦩中yz"]},
    ]
    assert (overall["records"], overall["characters"], overall["unknown_count"]) == (4, 14, 4)
    assert overall["coverage"] == 10 / 14
    assert overall["tokens_per_char"] == (5 + 17) / 14
    assert overall["tokens_per_char_chars_only"] == (6 + 17) / 14
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
    assert "overall: coverage 0.7143" in message
    assert "'clean'" not in message
    assert caught.value.report["sources"]["clean"]["coverage"] == 1.0


def test_only_a_source_below_threshold_still_fails(tok):
    texts = {"big": ["a" * 1000], "small": ["中"]}
    with pytest.raises(VocabularyCoverageError, match="'small'") as caught:
        check_vocabulary(texts, tok, min_coverage=0.99)
    assert "overall" not in str(caught.value)


def test_passes_at_threshold_and_after_adaptation(tok):
    assert check_vocabulary(TEXTS, tok, min_coverage=0.5)["sources"]["mixed"]["coverage"] == 0.5
    adapted = Tokenizer.default()
    adapted.adapt(TEXTS["mixed"] * 2, min_count=1, max_new_tokens=1, max_len=4)
    report = check_vocabulary(TEXTS, adapted, min_coverage=0.85)
    assert report["sources"]["mixed"]["coverage"] == 7 / 8  # 中 (6 times) was added; 🦩 did not fit


def test_rejects_threshold_outside_unit_interval(tok):
    with pytest.raises(ValueError):
        check_vocabulary(TEXTS, tok, min_coverage=1.5)
