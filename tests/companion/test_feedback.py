"""Feedback as training data: SFT examples, preference pairs with the prompt the reply came from."""

from bitzero.data.feedback import feedback_record, imitable, preference_pair

PROMPT = [{"role": "system", "content": "You are BitZero.\nFacts about the user:\n- likes tea\nThe user feels sad."},
          {"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi!"},
          {"role": "user", "content": "I had a bad day."}]


def test_thumbs_down_with_a_correction_is_a_pair_and_an_example_with_the_stored_prompt():
    record = feedback_record("f1", PROMPT, "Cool.", -1, " That sounds hard, I'm sorry. ")
    assert record["conversation"] == [*PROMPT, {"role": "assistant", "content": "That sounds hard, I'm sorry."}]
    assert imitable(record)
    pair = preference_pair(record)
    assert (pair.id, pair.prompt, pair.chosen, pair.rejected) == ("feedback-f1", PROMPT, "That sounds hard, I'm sorry.", "Cool.")


def test_thumbs_down_without_a_correction_is_a_one_sided_pair_never_imitated():
    record = feedback_record("f2", PROMPT, "Cool.", -1, None)
    assert not imitable(record)
    pair = preference_pair(record)
    assert pair.chosen is None and pair.rejected == "Cool." and pair.prompt[0]["role"] == "system"


def test_thumbs_up_is_an_example_and_no_pair_and_neutral_is_nothing():
    record = feedback_record("f3", PROMPT, "I'm sorry to hear that.", 1, None)
    assert imitable(record) and preference_pair(record) is None
    assert record["conversation"][-1]["content"] == "I'm sorry to hear that."
    assert feedback_record("f4", PROMPT, "ok", 0, None) is None
