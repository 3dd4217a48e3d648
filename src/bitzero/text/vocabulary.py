"""The vocabulary check: how much of each source the tokenizer knows, and what it does not.

Run before training so that a new data source full of characters the vocabulary lacks is
noticed (and shown, with examples) instead of being learnt as byte soup.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .tokenizer import Tokenizer

__all__ = ["VocabularyCoverageError", "check_vocabulary"]

SNIPPET_RADIUS = 20  # characters of context on each side of an unknown character
TOP_UNKNOWN = 20  # unknown characters listed per block


class VocabularyCoverageError(ValueError):
    """Coverage below the threshold; ``report`` holds the full figures for the caller to keep."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class _Tally:
    records: int = 0
    characters: int = 0
    tokens: int = 0
    unknown: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, text: str, tokenizer: Tokenizer, examples: int) -> None:
        ids, unknown_count = tokenizer.encode_with_unknown(text)
        self.records += 1
        self.characters += len(text)
        self.tokens += len(ids)
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
        self.unknown.update(other.unknown)
        for char, snippets in other.examples.items():
            found = self.examples.setdefault(char, [])
            found.extend(snippets[: max(0, examples - len(found))])

    def figures(self) -> dict[str, Any]:
        unknown_total = sum(self.unknown.values())
        # Character-only encoding: one token per known character, one per UTF-8 byte otherwise.
        fallback_bytes = sum(n * len(c.encode("utf-8", "surrogatepass")) for c, n in self.unknown.items())
        chars_only = self.characters - unknown_total + fallback_bytes
        top = sorted(self.unknown.items(), key=lambda item: (-item[1], item[0]))[:TOP_UNKNOWN]
        return {
            "records": self.records,
            "characters": self.characters,
            "unknown_count": unknown_total,
            "coverage": (self.characters - unknown_total) / self.characters if self.characters else 1.0,
            "tokens": self.tokens,
            "tokens_per_char": self.tokens / self.characters if self.characters else 0.0,
            "tokens_per_char_chars_only": chars_only / self.characters if self.characters else 0.0,
            "unknown_characters": [
                {"char": c, "codepoint": f"U+{ord(c):04X}", "count": n, "examples": self.examples[c]}
                for c, n in top
            ],
        }


def check_vocabulary(
    texts_by_source: Mapping[str, Sequence[str]],
    tokenizer: Tokenizer,
    min_coverage: float,
    examples: int = 5,
) -> dict[str, Any]:
    """Coverage, unknown characters and tokens per character, per source and overall.

    Each text counts as one record. Coverage is the fraction of characters encoded directly
    (not through byte fallback). Raises VocabularyCoverageError naming every block below
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
    report = {"min_coverage": min_coverage, "sources": sources, "overall": overall.figures()}
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
    lines.append("Add these characters (Tokenizer.adapt with a lower min_count) or clean the source.")
    return "\n".join(lines)
