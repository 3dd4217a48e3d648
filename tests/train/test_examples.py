"""Records to training examples: which tokens carry loss, difficulty for the curriculum."""

import pytest

from bitzero.train.examples import record_example, records_to_examples
from tests.tiny import tiny_tokenizer

TOKENIZER = tiny_tokenizer()
CHAT = [
    {"role": "system", "content": "Be kind."},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]


def test_assistant_loss_covers_the_answer_and_its_end_only():
    example = record_example({"conversation": CHAT, "difficulty": 3}, TOKENIZER)
    targets = [t for t, m in zip(example.ids, example.loss_mask, strict=True) if m]
    assert TOKENIZER.decode(targets) == "4<|im_end|>"
    assert example.difficulty == 3.0


def test_all_tokens_loss_and_default_difficulty():
    example = record_example({"conversation": CHAT}, TOKENIZER, loss_on="all")
    assert all(example.loss_mask) and example.difficulty == 1.0


def test_records_without_an_answer_are_skipped_and_bad_settings_refused():
    no_answer = {"conversation": CHAT[:2]}
    examples = records_to_examples([no_answer, {"conversation": CHAT}], TOKENIZER)
    assert len(examples) == 1
    assert len(records_to_examples([no_answer], TOKENIZER, loss_on="all")) == 1
    with pytest.raises(ValueError, match="loss_on"):
        record_example({"conversation": CHAT}, TOKENIZER, loss_on="answers")
