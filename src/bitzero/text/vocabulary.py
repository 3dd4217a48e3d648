"""The vocabulary check: how much of each source the tokenizer knows, and what it does not.

Run before training so that a new data source full of characters the teacher's vocabulary lacks
is noticed (and shown, with examples) instead of being learnt as byte soup. A character is
"unknown" when byte-level BPE splits it into tokens that each hold only part of its UTF-8 bytes
(emoji and scripts the vocabulary never merged); every text still round-trips, and the report
counts any text that does not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bitzero.errors import TextError
from bitzero.text.tokenizer import Tokenizer

__all__ = ["VocabularyCoverageError", "check_vocabulary"]

# Emoji blocks (pictographs, symbols, dingbats, flags) and the joiners/selectors inside emoji.
EMOJI_RANGES = ((0x1F000, 0x1FAFF), (0x2600, 0x27BF), (0x1F1E6, 0x1F1FF))
SNIPPET_RADIUS = 20  # characters of context on each side of an unknown character
TOP_UNKNOWN = 20  # unknown characters listed per block


class VocabularyCoverageError(TextError, ValueError):
    """Coverage below the threshold; ``report`` holds the full figures for the caller to keep."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class _Tally:
    records: int = 0
    characters: int = 0
    tokens: int = 0
    round_trip_failures: int = 0
    emoji: int = 0
    emoji_tokens: int = 0
    unknown: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, text: str, tokenizer: Tokenizer, examples: int) -> None:
        ids, unknown_count = tokenizer.encode_with_unknown(text)
        self.records += 1
        self.characters += len(text)
        self.tokens += len(ids)
        self.round_trip_failures += tokenizer.decode(ids) != text
        for char in text:
            if _is_emoji(char):
                self.emoji += 1
                self.emoji_tokens += len(tokenizer.encode(char))
        if unknown_count:
            for char in {c for c in text if not tokenizer.knows(c)}:
                self.unknown[char] += text.count(char)
                self._collect_examples(text, char, examples)

    def _collect_examples(self, text: str, char: str, limit: int) -> None:
        found = self.examples.setdefault(char, [])
        at = text.find(char)
        while at != -1 and len(found) < limit:
            found.append(text[max(0, at - SNIPPET_RADIUS) : at + SNIPPET_RADIUS + 1])
            at = text.find(char, at + 1)

    def merge(self, other: _Tally, examples: int) -> None:
        self.records += other.records
        self.characters += other.characters
        self.tokens += other.tokens
        self.round_trip_failures += other.round_trip_failures
        self.emoji += other.emoji
        self.emoji_tokens += other.emoji_tokens
        self.unknown.update(other.unknown)
        for char, snippets in other.examples.items():
            found = self.examples.setdefault(char, [])
            found.extend(snippets[: max(0, examples - len(found))])

    def figures(self) -> dict[str, Any]:
        unknown_total = sum(self.unknown.values())
        top = sorted(self.unknown.items(), key=lambda item: (-item[1], item[0]))[:TOP_UNKNOWN]
        return {
            "records": self.records,
            "characters": self.characters,
            "unknown_count": unknown_total,
            "coverage": (self.characters - unknown_total) / self.characters if self.characters else 1.0,
            "tokens": self.tokens,
            "tokens_per_char": self.tokens / self.characters if self.characters else 0.0,
            "round_trip_failures": self.round_trip_failures,
            "emoji": {"count": self.emoji, "tokens_per_emoji": self.emoji_tokens / self.emoji if self.emoji else 0.0},
            "unknown_characters": [
                {"char": c, "codepoint": f"U+{ord(c):04X}", "count": n, "examples": self.examples[c]}
                for c, n in top
            ],
        }


def _is_emoji(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in EMOJI_RANGES)


def check_vocabulary(
    texts_by_source: Mapping[str, Sequence[str]],
    tokenizer: Tokenizer,
    min_coverage: float,
    examples: int = 5,
) -> dict[str, Any]:
    """Coverage, unknown characters and tokens per character, per source and overall.

    Each text counts as one record. Coverage is the fraction of characters that encode to whole
    tokens (not split into partial bytes). Raises VocabularyCoverageError naming every block below
    ``min_coverage``; the error carries the report.
    """
    if not 0.0 <= min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be within [0, 1], got {min_coverage}")
    overall = _Tally()
    sources: dict[str, dict[str, Any]] = {}
    for name, texts in texts_by_source.items():
        tally = _Tally()
        for text in texts:
            tally.add(text, tokenizer, examples)
        sources[name] = tally.figures()
        overall.merge(tally, examples)
    report: dict[str, Any] = {"min_coverage": min_coverage, "sources": sources, "overall": overall.figures()}
    failing = [(f"source {name!r}", block) for name, block in sources.items() if block["coverage"] < min_coverage]
    if report["overall"]["coverage"] < min_coverage:
        failing.append(("overall", report["overall"]))
    if failing:
        raise VocabularyCoverageError(_failure_message(failing, min_coverage), report)
    return report


def _failure_message(failing: list[tuple[str, dict[str, Any]]], min_coverage: float) -> str:
    lines = [f"vocabulary coverage below {min_coverage}:"]
    for label, block in failing:
        top = ", ".join(
            f"{u['char']!r} {u['codepoint']} x{u['count']}" for u in block["unknown_characters"][:5]
        )
        lines.append(f"  {label}: coverage {block['coverage']:.4f}; top unknown characters: {top}")
    lines.append("Clean the source, lower min_coverage, or use a teacher whose vocabulary covers this script.")
    return "\n".join(lines)
