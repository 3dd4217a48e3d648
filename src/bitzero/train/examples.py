"""Records (the JSON Lines contract) to token examples for the loop.

Which tokens carry loss is a choice: ``"assistant"`` (what the model should say, and its closing
``<|end|>``; the prompt is context only) or ``"all"`` (every token after the first, as in plain
language-model pretraining).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bitzero.text import Tokenizer
from bitzero.train.batching import Example

LOSS_ON = ("assistant", "all")
DEFAULT_DIFFICULTY = 1.0


def record_example(record: Mapping[str, Any], tokenizer: Tokenizer, loss_on: str = "assistant") -> Example:
    """One record's conversation as ids plus loss mask; the record's difficulty feeds the curriculum."""
    if loss_on not in LOSS_ON:
        raise ValueError(f"loss_on must be one of {LOSS_ON}, got {loss_on!r}")
    ids, mask = tokenizer.encode_chat_with_mask(record["conversation"])
    if loss_on == "all":
        mask = [True] * len(ids)
    difficulty = float(record.get("difficulty", DEFAULT_DIFFICULTY))
    return Example(ids, mask, difficulty)


def records_to_examples(
    records: Iterable[Mapping[str, Any]], tokenizer: Tokenizer, loss_on: str = "assistant"
) -> list[Example]:
    """Examples for every record that has at least one target token under ``loss_on``.

    A record without one (no assistant turn, say) teaches nothing; raising would stop a stage
    over data the validation suite already let through, so it is skipped (and counted by the
    caller, who compares lengths).
    """
    examples = [record_example(r, tokenizer, loss_on) for r in records]
    return [ex for ex in examples if any(ex.loss_mask[1:])]
