"""The conversation eval's scenarios, the scorer's pieces on crafted replies, the verdict, and the
decoding settings it chooses between."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitzero.companion.conversation_eval import (
    EvalLimits,
    Exchange,
    ScenarioError,
    claims_liking,
    claims_name,
    eval_verdict,
    figures,
    is_echo,
    is_garbage,
    is_loop,
    load_scenarios,
    score_reply,
)
from bitzero.companion.decoding import Decoding, DecodingError, finished_at
from bitzero.serving.sampling import Sampling

GOOD = "I'm so sorry about your dog. Losing a friend like that hurts, and it is okay to miss him."


def test_the_packaged_scenarios_cover_what_the_issue_asks() -> None:
    scenarios = load_scenarios()
    ids = {s.id for s in scenarios}
    assert {"name-and-likes", "grief", "good-news", "worry", "advice", "about-you", "small-talk"} <= ids
    recall = next(s for s in scenarios if s.id == "name-and-likes")
    assert recall.user_name == "Ada" and recall.user_likes == ("hik",) and len(recall.conversations) == 7
    assert recall.conversations[1][0].expect_any == ("Ada",)  # asked in a new conversation


@pytest.mark.parametrize("text, problem", [
    ("scenarios: [", "cannot be read"),
    ("scenarios:\n  - id: a\n", "cannot be read"),
    ("scenarios:\n  - {id: a, conversations: [[{say: hi}]]}\n  - {id: a, conversations: [[{say: yo}]]}\n", "unique"),
    ("scenarios:\n  - {id: a, conversations: [[{say: ' '}]]}\n", "non-empty"),
])
def test_a_malformed_scenarios_file_says_what_is_wrong(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "scenarios.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=problem):
        load_scenarios(path)


@pytest.mark.parametrize("text", [
    "Hello there, Ada! It's me, the wonderful" + " God-fearing" * 8,
    "I'm so sorry for your loss. I am here. I'm so sorry for your loss.",
    "ah, ah, ah, ah, ah, ah, ah, ah, ah, ah, ah, ah",
])
def test_loops_are_found(text: str) -> None:
    assert is_loop(text)


def test_a_plain_reply_is_no_loop_and_no_garbage() -> None:
    assert not is_loop(GOOD) and not is_garbage(GOOD)
    assert not is_garbage("I'm not just a wizard; I'm a good friend of the community.")  # a semicolon is no code


@pytest.mark.parametrize("text", [
    "qzxv brrk ttt pfft zzkq wrrb",  # no vowels
    "def hello(): return {x: 1}",  # code
    "ничего не понятно здесь совсем",  # not English
    "Paris banana orange Tuesday velvet mountain quickly purple",  # words, but no English sentence
])
def test_garbage_is_found(text: str) -> None:
    assert is_garbage(text)


def test_claiming_the_users_name_is_found_but_using_it_is_fine() -> None:
    assert claims_name("I'm Ada, a wonderful person with a wonderful heart.", "Ada")
    assert claims_name("Hello! My name is ada.", "Ada")
    assert not claims_name("Your name is Ada. Nice to talk again, Ada!", "Ada")
    assert claims_name("Hi, it's me, Ada, and I'm here to help.", "Ada")
    assert not claims_name("I'm Ada's friend.", None)


@pytest.mark.parametrize("reply, claim", [
    ("I'm a curious soul. I've been hiking for a long time.", True),
    ("I love hiking, and I'm so happy to enjoy hiking.", True),
    ("My favourite thing is Hiking!", True),
    ("I'm glad you're enjoying hiking.", False),  # said of the user
    ("You love hiking. I can suggest a trail.", False),  # the liking and the first person in other sentences
    ("Hiking is a wonderful way to spend a day.", False),  # nobody's
    ("I've been reading for a long time.", False),  # not the user's liking
])
def test_claiming_the_users_liking_as_its_own_is_found(reply: str, claim: bool) -> None:
    assert claims_liking(reply, ["hik"]) is claim
    assert not claims_liking(reply, [])
    scored = score_reply(Exchange("s", "Who are you?", reply, "stop", user_likes=("hik",)))
    assert scored.like_claim is claim


def test_saying_the_users_name_as_its_own_is_no_recall() -> None:
    claimed = score_reply(Exchange("s", "What is my name?", "My name is Ada.", "stop", ("Ada",), "Ada"))
    assert claimed.name_claim and claimed.recalled is False


@pytest.mark.parametrize("tone, reply, wrong", [
    ("positive", "I'm so sorry to hear that. Starting a job is hard.", True),
    ("positive", "Congratulations! That is wonderful news.", False),
    ("negative", "Congratulations on your exam!", True),
    ("negative", "I'm sorry, exams are stressful. Try to rest.", False),
    (None, "I'm so sorry to hear that.", False),
])
def test_the_wrong_tone_for_the_news_is_found(tone: str | None, reply: str, wrong: bool) -> None:
    assert score_reply(Exchange("s", "news", reply, "stop", tone=tone)).wrong_tone is wrong


def test_the_wrong_tone_rate_counts_only_replies_to_news_with_a_tone(embedder) -> None:
    exchanges = [Exchange("good", "I got the job!", "I'm so sorry to hear that.", "stop", tone="positive"),
                 Exchange("good", "I passed!", "Well done, that is great.", "stop", tone="positive"),
                 Exchange("chat", "How are you?", "I'm sorry, I'm a bit tired.", "stop")]
    assert figures(exchanges, embedder)["wrong_tone_rate"] == 0.5


def test_an_unknown_tone_in_the_scenarios_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scenarios.yaml"
    path.write_text("scenarios:\n  - {id: a, conversations: [[{say: hi, tone: cheerful}]]}\n")
    with pytest.raises(ScenarioError, match="unknown tone"):
        load_scenarios(path)


def test_a_reply_is_scored_on_each_count() -> None:
    cut = score_reply(Exchange("s", "hi", "I think that you should go and", "length"))
    assert cut.cut_off and not cut.empty
    assert not score_reply(Exchange("s", "hi", "Go for a walk.", "length")).cut_off  # ended as the limit came
    assert score_reply(Exchange("s", "hi", "  ...  ", "stop")).empty
    recalled = score_reply(Exchange("s", "What is my name?", "Your name is Ada.", "stop", ("Ada",), "Ada"))
    assert recalled.recalled is True and not recalled.name_claim
    assert score_reply(Exchange("s", "hi", "The user loves hiking.", "stop")).speaks_of_user
    assert score_reply(Exchange("s", "hi", GOOD, "stop")).recalled is None  # nothing to recall here


@pytest.mark.parametrize(("message", "reply", "echo"), [
    ("Nice weather today, isn't it?", "Nice weather today, isn't it.", True),  # what SmolLM2 said in 6 of 8 seeds
    ("Nice weather today, isn't it?", "Oh yes! Nice weather today, isn't it? Let's go out.", True),
    ("Nice weather today, isn't it?", "It is lovely weather today, perfect for a walk.", False),
    ("I love hiking.", "You love hiking, and I love hearing about it.", False),  # answering in its words is fine
    ("Hi there", "Hi there! How are you?", False),  # a greeting returned: under three words
])
def test_an_echo_of_the_message_is_found(message: str, reply: str, echo: bool) -> None:
    assert is_echo(reply, message) is echo


def test_an_echo_is_not_on_topic(embedder) -> None:
    message = "Nice weather today, isn't it?"
    echoed = figures([Exchange("s", message, "Nice weather today, isn't it.", "stop")], embedder)
    answered = figures([Exchange("s", message, "Yes, the sun is out and it is warm.", "stop")], embedder)
    assert echoed["echo_rate"] == 1.0 and echoed["on_topic"] == 0.0
    assert answered["echo_rate"] == 0.0 and answered["on_topic"] > 0.2


def test_figures_are_rates_over_every_reply(embedder) -> None:
    exchanges = [Exchange("grief", "My dog died yesterday.", GOOD, "stop"),
                 Exchange("grief", "My dog died yesterday.", "so sorry " * 20, "length"),
                 Exchange("name", "What is my name?", "", "stop", ("Ada",))]
    scored = figures(exchanges, embedder)
    assert scored["replies"] == 3
    assert scored["loop_rate"] == pytest.approx(1 / 3, abs=1e-3) and scored["empty_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert scored["recall_rate"] == 0.0
    assert 0 < scored["on_topic"] < 1


def test_the_verdict_refuses_loops_and_garbage_and_names_each_limit() -> None:
    good = {"loop_rate": 0.0, "garbage_rate": 0.0, "empty_rate": 0.0, "recall_rate": 1.0, "on_topic": 0.5}
    assert eval_verdict(good) == (True, "conversation eval within limits")
    passed, reason = eval_verdict({**good, "loop_rate": 0.5, "garbage_rate": 0.1})
    assert not passed and "loop_rate 0.500 > 0.05" in reason and "garbage_rate" in reason
    passed, reason = eval_verdict(good, {"min_recall_rate": 1.0, "min_on_topic": 0.6})
    assert not passed and "on_topic 0.500 < 0.6" in reason and "recall" not in reason
    assert eval_verdict({**good, "loop_rate": 0.5}, EvalLimits(max_loop_rate=None))[0]
    with pytest.raises(ScenarioError, match="max_loops"):
        eval_verdict(good, {"max_loops": 1})


def test_decoding_defaults_take_a_models_own_and_a_requests_own_over_them() -> None:
    model = Decoding.of({"temperature": 0.3, "max_sentences": 3}, base=Decoding(max_tokens=100))
    assert (model.temperature, model.max_sentences, model.max_tokens) == (0.3, 3, 100)
    asked = Sampling.like(model).over({"temperature": 1.0, "top_p": None})
    assert (asked.temperature, asked.top_p) == (1.0, model.top_p)
    with pytest.raises(DecodingError, match="unknown decoding settings"):
        Decoding.of({"temprature": 0.3})
    with pytest.raises(DecodingError, match=r"repeat_ngram=1 \(must be 0 or >= 2\), max_tokens=0"):
        Decoding(repeat_ngram=1, max_tokens=0)


def test_a_reply_ends_after_its_finished_sentences() -> None:
    text = "Hi there! Step 1. is easy, add 3.5 cups. Then rest? Sure"
    assert finished_at(text, 1) == len("Hi there!")
    assert finished_at(text, 3) == len("Hi there! Step 1. is easy, add 3.5 cups. Then rest?")
    assert finished_at("It is done.", 1) is None  # not finished until the next word starts
    assert finished_at(text, 0) is None
