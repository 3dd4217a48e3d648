"""Next-token choice in numpy: greedy, temperature, top-p, seeds."""

import numpy as np
import pytest

from bitzero.serving.sampling import (
    Picker,
    RecallNudge,
    RepeatGuard,
    Sampling,
    Steering,
    _most_likely_first,
    penalize,
    sample_token,
)

LOGITS = np.log(np.array([0.5, 0.3, 0.15, 0.05]))


def test_greedy_is_argmax() -> None:
    assert sample_token(LOGITS, 0.0, 1.0, np.random.default_rng(0)) == 0


def test_top_p_keeps_the_smallest_prefix_reaching_the_mass() -> None:
    rng = np.random.default_rng(0)
    picks = {sample_token(LOGITS, 1.0, 0.7, rng) for _ in range(300)}
    assert picks == {0, 1}  # 0.5 < 0.7 <= 0.5 + 0.3
    assert {sample_token(LOGITS, 1.0, 0.1, rng) for _ in range(50)} == {0}


def test_temperature_sampling_follows_the_distribution_and_the_seed() -> None:
    draws = [sample_token(LOGITS, 1.0, 1.0, np.random.default_rng(seed)) for seed in range(4000)]
    shares = np.bincount(draws, minlength=4) / len(draws)
    assert np.allclose(shares, [0.5, 0.3, 0.15, 0.05], atol=0.03)
    first = [sample_token(LOGITS, 0.8, 0.9, np.random.default_rng(5)) for _ in range(3)]
    assert len(set(first)) == 1


@pytest.mark.parametrize(("temperature", "top_p"), [(-0.1, 1.0), (1.0, 0.0), (1.0, 1.5)])
def test_bad_settings_are_refused(temperature: float, top_p: float) -> None:
    with pytest.raises(ValueError, match="temperature must be"):
        sample_token(LOGITS, temperature, top_p, np.random.default_rng(0))


def test_penalties_follow_openai_and_break_a_greedy_loop() -> None:
    logits = np.array([3.0, 2.5, 0.0], dtype=np.float32)
    assert penalize(logits, {}, 0.5, 0.5) is logits
    adjusted = penalize(logits, {0: 2, 2: 1}, frequency=0.5, presence=0.25)
    np.testing.assert_allclose(adjusted, [3.0 - 1.0 - 0.25, 2.5, 0.0 - 0.5 - 0.25])
    assert sample_token(adjusted, 0.0, 1.0, np.random.default_rng(0)) == 1  # the repeated token loses
    np.testing.assert_array_equal(logits, [3.0, 2.5, 0.0])  # the row itself is untouched


def test_repeat_guard_bans_only_the_continuation_of_an_earlier_ngram() -> None:
    guard = RepeatGuard([5, 6, 7, 8, 1], n=3)  # earlier text: trigrams (5,6,7) (6,7,8) (7,8,1)
    logits = np.zeros(10, dtype=np.float32)
    assert np.isneginf(guard.apply(logits, [9, 5, 6])[7]) and np.isfinite(guard.apply(logits, [9, 5, 6])).sum() == 9
    assert np.isneginf(guard.apply(logits, [7, 8])[1])
    assert guard.apply(logits, [6, 5]) is logits, "a pair never said before bans nothing"
    assert RepeatGuard([5, 6, 7], n=0).apply(logits, [5, 6]) is logits, "n < 2: off"


def test_top_k_keeps_only_the_most_likely_tokens() -> None:
    rng = np.random.default_rng(0)
    assert {sample_token(LOGITS, 1.0, 1.0, rng, top_k=2) for _ in range(300)} == {0, 1}
    assert {sample_token(LOGITS, 1.0, 1.0, rng, top_k=0) for _ in range(300)} == {0, 1, 2, 3}, "0: off"


def test_repeat_guard_learns_the_reply_so_it_does_not_loop() -> None:
    guard = RepeatGuard([], n=3)
    logits = np.zeros(10, dtype=np.float32)
    reply = [4, 5, 6, 4, 5]
    for end in range(1, len(reply) + 1):
        guard.learn(reply[:end])
    assert np.isneginf(guard.apply(logits, reply)[6]), "(4, 5) was followed by 6 once: not again"
    assert np.isfinite(guard.apply(logits, reply)).sum() == 9



@pytest.mark.parametrize("shape", ["peaked", "flat", "ties"])
def test_top_p_sorts_only_the_head_and_that_as_the_whole_sort_does(shape: str) -> None:
    """The partial sort behind top-p: the whole vocabulary's stable order, cut after top_p of the
    mass at the earliest (so the nucleus, its sums and the token drawn are the same)."""
    source = np.random.default_rng(5)
    for trial in range(40):
        logits = source.normal(size=5000) * {"peaked": 8.0, "flat": 0.2, "ties": 3.0}[shape]
        probs = np.exp(np.round(logits) if shape == "ties" else logits)
        probs /= probs.sum()
        top_p = (0.5, 0.9, 0.99)[trial % 3]
        order = _most_likely_first(probs, top_p)
        assert np.array_equal(order, np.argsort(-probs, kind="stable")[: order.size])
        assert np.cumsum(probs[order])[-1] >= top_p


def test_a_barred_phrase_is_never_completed_and_its_pieces_stay_free() -> None:
    guard = RepeatGuard([], n=0, barred=[[3, 4, 5], [7]])
    logits = np.zeros(10, dtype=np.float32)
    assert np.isneginf(guard.apply(logits, [1, 3, 4])[5]), "3 4 is not followed by 5"
    assert np.isneginf(guard.apply(logits, [1])[7]), "a one-token phrase is barred everywhere"
    assert np.isfinite(guard.apply(logits, [1, 4])[5]) and np.isfinite(guard.apply(logits, [1, 3, 4])[4])


def test_a_recalled_word_near_the_top_is_raised_until_said() -> None:
    logits = np.array([5.0, 4.0, 3.5, 3.0, 0.0, -2.0], dtype=np.float32)  # token 3 ranks 4th, token 5 last
    nudge = RecallNudge([3, 5], bias=3.0, top_k=4)
    raised = nudge.apply(logits)
    assert raised[3] == 6.0 and raised[5] == -2.0, "only a word the model already ranks in its top k moves"
    assert np.array_equal(nudge.apply(logits), raised) and logits[3] == 3.0, "the model's own row is left as it was"
    nudge.said(3)
    assert nudge.apply(logits) is logits, "once said, a word is the model's to choose again"
    assert RecallNudge([3], bias=0.0, top_k=4).apply(logits) is logits, "bias 0: off"


def test_an_opening_leads_the_reply_and_the_recalled_word_follows() -> None:
    logits = np.array([5.0, 4.0, 3.5, 3.0, 0.0], dtype=np.float32)  # the model would open with 0
    picker = Picker([9], Sampling(recall_bias=3.0, recall_top_k=4), Steering(recalled=(2,), opening=(3,)))
    assert [picker.pick(logits) for _ in range(3)] == [3, 2, 0], "the opening, then the recalled word, then the model's"
    unranked = Picker([9], Sampling(recall_bias=3.0, recall_top_k=3), Steering(recalled=(2,), opening=(4,)))
    assert unranked.pick(logits) == 0, "an opening the model ranks low is not pushed in, nor the recalled word first"
    assert unranked.pick(logits) == 2, "the recalled word from the second token on"
    off = Picker([9], Sampling(recall_bias=0.0), Steering(recalled=(2,), opening=(3,)))
    assert off.pick(logits) == 0, "bias 0: no opening either"


def test_a_recalled_word_may_repeat_an_earlier_answer_but_never_a_barred_phrase() -> None:
    logits = np.array([5.0, 4.0, 3.5, 0.0], dtype=np.float32)  # the model's own choice: 0
    earlier = (7, 8, 0)  # an earlier answer said 0 after 7 8
    again = Picker([7, 8], Sampling(recall_bias=3.0, recall_top_k=3, repeat_ngram=3), Steering(earlier=earlier, recalled=(0,)))
    assert again.pick(logits) == 0, "the remembered fact is said again"
    said = Picker([7, 8], Sampling(repeat_ngram=3), Steering(earlier=earlier))
    assert said.pick(logits) == 1, "anything else is not said twice"
    barred = Picker([7, 8], Sampling(recall_bias=3.0, recall_top_k=3), Steering(barred=((8, 0),), recalled=(0,)))
    assert barred.pick(logits) != 0, "a barred phrase stays barred"


def test_the_picker_says_a_recalled_word_once_and_never_a_barred_phrase() -> None:
    logits = np.array([5.0, 4.0, 3.5, 0.0], dtype=np.float32)
    recalling = Sampling(recall_bias=3.0, recall_top_k=3)
    picker = Picker([9], recalling, Steering(recalled=(2,)))
    assert [picker.pick(logits) for _ in range(3)] == [2, 0, 0]  # raised once over the model's top, then not
    barred = Picker([9, 1], recalling, Steering(barred=((1, 2),), recalled=(2,)))
    assert barred.pick(logits) == 0, "a barred phrase wins over a recalled word"
    assert Picker([9], Sampling(), Steering(recalled=(2,))).pick(logits) == 0, "the settings' bias is off by default"
    with pytest.raises(ValueError, match="recall_bias"):
        Sampling(recall_bias=-1.0)
