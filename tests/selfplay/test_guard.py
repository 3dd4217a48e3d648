"""The chat guard: a self-played candidate that talks worse than the input is refused."""

import copy

import pytest
import torch

from bitzero.selfplay.guard import chat_guard
from bitzero.train.examples import records_to_examples
from tests.tiny import tiny_model, tiny_tokenizer

CHATS = [{"id": f"c{i}", "type": "conversation", "conversation": [
    {"role": "user", "content": "hello there, how are you today?"},
    {"role": "assistant", "content": "I am fine, thanks! and you?"}]} for i in range(3)]


def test_a_candidate_that_talks_worse_is_refused_and_an_equal_one_passes() -> None:
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    guard = chat_guard(model, records_to_examples(CHATS, tokenizer), 0.05, 64, tokenizer.pad_id)
    same = guard(copy.deepcopy(model))
    assert same["passed"] and same["chat_nll_change"] == pytest.approx(0.0, abs=1e-6)

    worse = copy.deepcopy(model)
    with torch.no_grad():
        worse.output_weight.mul_(20.0)  # confident and wrong: a much higher NLL on every reply
    judged = guard(worse)
    assert not judged["passed"] and judged["chat_nll_change"] > 0.05
    assert judged["chat_nll_before"] == same["chat_nll_before"]


def test_without_conversations_it_says_so() -> None:
    tokenizer = tiny_tokenizer()
    with pytest.raises(ValueError, match="validation conversations"):
        chat_guard(tiny_model(tokenizer), [], 0.05, 64, tokenizer.pad_id)
