"""The prompt goes through the chat template, fits the budget exactly and keeps what matters most:
older turns go first, then the least relevant memories; the newest user turn always stays."""

from __future__ import annotations

import pytest

from bitzero.companion.context import (
    DEFAULT_PERSONA,
    RECAP,
    answer_opening,
    asks_about_user,
    asks_for_a_fact,
    build_prompt,
    own_claims,
    recalled_tokens,
    recalled_words,
    recap_text,
    to_the_user,
)
from tests.tiny import tiny_tokenizer

TOKENIZER = tiny_tokenizer()  # SmolLM2's chat template (ChatML)
MEMORIES = [f"memory {i} about something the user said" for i in range(10)]


def _length(conversation: list[dict[str, str]]) -> int:
    return len(TOKENIZER.encode_chat(conversation, add_generation_prompt=True))


def _long_chat() -> list[dict[str, str]]:
    turns = []
    for i in range(30):
        turns += [{"role": "user", "content": f"message number {i} " * 3}, {"role": "assistant", "content": f"reply {i}"}]
    return [*turns, {"role": "user", "content": "the newest question " * 3}]


def test_everything_fits_with_the_memories_recalled_to_the_user_in_the_companions_voice() -> None:
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
             {"role": "user", "content": "how are you"}]
    prompt = build_prompt(TOKENIZER, turns, 2048, user_name="Ana", memories=["The user loves tea."],
                          emotion_note="The user seems to feel joy (mild); respond with empathy.")
    system = prompt[0]["content"]
    assert prompt[0]["role"] == "system" and prompt[2:] == turns
    assert system.startswith(DEFAULT_PERSONA) and "joy" in system and "Ana" not in system and "tea" not in system
    assert prompt[1] == {"role": "assistant", "content": f"{RECAP} Your name is Ana. You love tea."}
    text = TOKENIZER.decode(TOKENIZER.encode_chat(prompt, add_generation_prompt=True))
    assert text.startswith("<|im_start|>system\nYou are BitZero") and text.count("<|im_start|>system") == 1
    assert text.endswith("<|im_start|>user\nhow are you<|im_end|>\n<|im_start|>assistant\n")


def test_nothing_remembered_means_no_recap_turn() -> None:
    prompt = build_prompt(TOKENIZER, [{"role": "user", "content": "hi"}], 2048)
    assert [t["role"] for t in prompt] == ["system", "user"]


@pytest.mark.parametrize(("memory", "said"), [
    ("The user's name is Ana.", "Your name is Ana."),
    ("The user loves tea.", "You love tea."),
    ("The user does not like rain.", "You do not like rain."),
    ("The user cannot stand noise.", "You cannot stand noise."),
    ("The user is 31 years old.", "You are 31 years old."),
    ("The user has two cats.", "You have two cats."),
    ("The user's favourite colour is green.", "Your favourite colour is green."),
    ("The user felt sadness (mild) about: work", "You felt sadness (mild) about: work"),
    ("The user lives in Oslo.", "You live in Oslo."),
    ("Remember to ask about the trip.", "Remember to ask about the trip."),
])
def test_every_memory_the_extractor_writes_is_said_to_the_user(memory: str, said: str) -> None:
    assert to_the_user(memory) == said


def test_the_recalled_words_are_the_name_and_the_content_of_each_value() -> None:
    assert recalled_words("Ana", ["long walks on the beach", "green tea", "a cat called Tom"]) == [
        "Ana", "long", "walks", "beach", "green", "tea", "cat", "called", "Tom"]
    assert recalled_words(None, ["my job", "Ana"]) == ["job", "Ana"] and recalled_words(None, []) == []


@pytest.mark.parametrize("text, about", [
    ("What do I love doing?", True), ("Do you remember my name?", True), ("Can you help me plan a trip?", True),
    ("What are you, exactly?", False), ("Nice weather today, isn't it?", False), ("I love my dog.", False),
])
def test_a_question_about_the_user_is_told_from_other_turns(text: str, about: bool) -> None:
    assert asks_about_user(text) is about


@pytest.mark.parametrize("text, fact", [
    ("What is my name?", True), ("Where do I live?", True), ("Who am I?", True), ("Do you know where I live?", True),
    ("What did I tell you about my job?", True), ("Can you tell me my name?", True),
    ("Hey, could you remind me what I love?", True), ("What is my name? Please tell me.", True),
    ("What could I have told you about my job?", True),
    ("Can you help me plan a trip?", False), ("Hey, can you help me plan my week?", False),
    ("please, find me a book?", False), ("What should I do this weekend?", False),
    ("Do you think I should quit my job?", False), ("What would you suggest I do?", False),
    ("Why can't I sleep?", False), ("What are you, exactly?", False), ("I love my dog.", False),
])
def test_a_question_for_a_fact_about_the_user_is_told_from_requests_and_advice(text: str, fact: bool) -> None:
    assert asks_for_a_fact(text) is fact


def test_the_answer_opens_in_the_second_person_with_tokens_that_say_enough() -> None:
    pieces = {TOKENIZER.decode([t]) for t in answer_opening(TOKENIZER)}
    assert pieces and all(p.strip().startswith("You") for p in pieces), pieces


def test_a_recalled_words_first_token_is_nudged_only_where_it_says_enough() -> None:
    pieces = {TOKENIZER.decode([t]) for t in recalled_tokens(TOKENIZER, ["Ada", "mountains", "tea", "Jo-Ann"])}
    assert pieces == {" Ad", "Ad", " mount"}, "' t' and ' ' (tea, Jo-Ann) would raise any word that starts so"


def test_the_users_name_is_barred_as_the_companions_own() -> None:
    assert "I'm Ana" in own_claims("Ana") and "it's me, Ana" in own_claims("Ana") and not own_claims(None)
    claims = own_claims(None, ["hiking", "Porto"])
    assert "I love hiking" in claims and "I live in Porto" in claims and not any("Ana" in c for c in claims)
    assert recap_text(None, []) is None


@pytest.mark.parametrize("budget", [60, 120, 250, 600, 2000])
def test_prompt_fits_exactly_turns_going_before_memories(budget: int) -> None:
    turns = _long_chat()
    prompt = build_prompt(TOKENIZER, turns, budget, persona="You are kind.", user_name="Ana", memories=MEMORIES)
    assert _length(prompt) <= budget
    assert prompt[-1] == turns[-1] or prompt[-1]["content"] in turns[-1]["content"]  # the newest stays
    head = 2 if prompt[1]["role"] == "assistant" and prompt[1]["content"].startswith(RECAP) else 1
    kept = len(prompt) - head
    assert prompt[head:-1] == turns[-kept:-1]
    one_more = [*prompt[:head], *turns[-kept - 1:]]
    assert _length(one_more) > budget, "an older turn that fitted was dropped"
    recap = prompt[1]["content"] if prompt[1]["role"] == "assistant" and prompt[1]["content"].startswith(RECAP) else ""
    present = [m in recap for m in MEMORIES]
    assert present == sorted(present, reverse=True), "the most relevant memories are the last to go"
    if not all(present):  # a memory went only because it could not fit even beside the newest turn alone
        more = recap_text("Ana", MEMORIES[: sum(present) + 1])
        assert _length([prompt[0], {"role": "assistant", "content": more}, turns[-1]]) > budget


def test_an_overlong_newest_turn_keeps_its_end() -> None:
    question = "word " * 400 + "the real question?"
    prompt = build_prompt(TOKENIZER, [{"role": "user", "content": question}], 100, persona="You are kind. " * 40)
    assert _length(prompt) <= 100 and len(prompt) == 2
    assert prompt[1]["content"].endswith("the real question?") and question.endswith(prompt[1]["content"])
    assert prompt[0]["content"].startswith("You are kind.")
    assert _length([prompt[0], {"role": "user", "content": ""}]) <= 50  # the system text takes at most half


def test_client_system_messages_are_kept_and_tiny_budgets_refused() -> None:
    prompt = build_prompt(TOKENIZER, [{"role": "system", "content": "Answer in French."},
                                      {"role": "user", "content": "hi"}], 200, persona="P.")
    assert prompt[0]["content"].startswith("P.\nAnswer in French.") and len(prompt) == 2
    with pytest.raises(ValueError, match="budget"):
        build_prompt(TOKENIZER, [{"role": "user", "content": "hi"}], 4)
