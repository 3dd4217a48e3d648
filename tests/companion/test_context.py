"""The prompt fits the context length and keeps what matters most."""

from __future__ import annotations

import pytest

from bitzero.companion.context import build_prompt
from bitzero.text import Tokenizer

TOKENIZER = Tokenizer.default()


def _length(conversation: list[dict[str, str]]) -> int:
    return len(TOKENIZER.encode_chat(conversation, add_generation_prompt=True))


def test_everything_fits_when_there_is_room() -> None:
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
             {"role": "user", "content": "how are you"}]
    prompt = build_prompt(TOKENIZER, turns, 400, user_name="Ana", memories=["The user loves tea."],
                          emotion_note="The user seems to feel joy (mild); respond with empathy.")
    system = prompt[0]["content"]
    assert prompt[0]["role"] == "system" and prompt[1:] == turns
    assert "The user's name is Ana." in system and "- The user loves tea." in system and "joy" in system


@pytest.mark.parametrize("budget", [40, 80, 150, 300])
def test_prompt_never_exceeds_the_budget(budget: int) -> None:
    turns = []
    for i in range(30):
        turns += [{"role": "user", "content": f"message number {i} " * 3}, {"role": "assistant", "content": f"reply {i}"}]
    turns.append({"role": "user", "content": "the newest question " * 3})
    memories = [f"memory {i} about something the user said" for i in range(10)]
    prompt = build_prompt(TOKENIZER, turns, budget, persona="You are kind.", user_name="Ana", memories=memories)
    assert _length(prompt) <= budget
    assert prompt[-1]["role"] == "user" and prompt[-1]["content"].endswith("newest question ")
    if budget >= 300:
        assert "memory 0" in prompt[0]["content"]  # the most relevant memory is the last to go
        assert prompt[-3]["content"].startswith("message number 29")  # recent turns kept first


def test_client_system_messages_are_kept_and_tiny_budgets_refused() -> None:
    prompt = build_prompt(TOKENIZER, [{"role": "system", "content": "Answer in French."},
                                      {"role": "user", "content": "hi"}], 200, persona="P.")
    assert prompt[0]["content"].startswith("P.\nAnswer in French.") and len(prompt) == 2
    with pytest.raises(ValueError, match="budget"):
        build_prompt(TOKENIZER, [{"role": "user", "content": "hi"}], 4)
