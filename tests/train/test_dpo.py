"""DPO on feedback pairs: the loss by hand, and a few steps that move held-out preferences."""

import math
import random

import torch

from bitzero.data.feedback import PreferencePair
from bitzero.train.dpo import DPOConfig, dpo_loss, encode_pairs, encode_reply, personalize, preference_figures
from tests.tiny import tiny_model, tiny_tokenizer

KIND = ["thanks", "friend", "kind", "fine", "hello", "love", "you", "today"]
CODE = ["def", "return", "print", "add", "answer", "check", "19", "12"]
QUESTIONS = ["How are you today?", "My dog moved away.", "I love hiking.", "My name is Ada.", "I feel sad today.",
             "What about the mountains?", "Do you remember me?", "Thanks for listening.", "Is 12 + 7 = 19?",
             "Tell me something.", "Good morning!", "I am back."]


def synthetic_pairs() -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Chosen: six warm words; rejected: six code words (similar token counts). Held-out pairs have
    their own questions and word draws: only the preference itself carries over."""
    rng = random.Random(0)

    def pair(i: int, question: str) -> PreferencePair:
        prompt = [{"role": "system", "content": "You are a kind companion who remembers the user."},
                  {"role": "user", "content": question}]
        return PreferencePair(f"p{i}", prompt, " ".join(rng.choices(CODE, k=6)), " ".join(rng.choices(KIND, k=6)))

    pairs = [pair(i, q) for i, q in enumerate(QUESTIONS)]
    return pairs[:8], pairs[8:]


def test_dpo_loss_matches_a_hand_computation():
    beta = 0.5
    pc, pr, rc, rr = torch.tensor([-3.0, -10.0]), torch.tensor([-4.0, -2.0]), torch.tensor([-3.5, -9.0]), torch.tensor([-3.0, -2.5])
    has = torch.tensor([1.0, 0.0])
    loss = dpo_loss(pc, pr, rc, rr, has, beta)
    # pair 0: margin = (-3 + 3.5) - (-4 + 3) = 1.5; pair 1 (no chosen): margin = -(-2 + 2.5) = -0.5
    expected = [-math.log(1 / (1 + math.exp(-beta * 1.5))), -math.log(1 / (1 + math.exp(beta * 0.5)))]
    assert torch.allclose(loss, torch.tensor(expected), atol=1e-6)


def test_reply_mask_covers_only_the_last_reply_and_its_end_token():
    tokenizer = tiny_tokenizer()
    prompt = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "an older reply"},
              {"role": "user", "content": "how are you?"}]
    example = encode_reply(tokenizer, prompt, "I am fine")
    marked = [t for t, m in zip(example.ids, example.loss_mask, strict=True) if m]
    assert marked == tokenizer.encode("I am fine") + [tokenizer.eos_id]


def test_a_few_dpo_steps_raise_heldout_preference_accuracy():
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer, quantized=True)
    train, heldout = synthetic_pairs()
    cfg = DPOConfig(beta=0.1, lr=3e-3, steps=12, batch_size=4, device="cpu", nll_tolerance=100.0)
    tuned, report = personalize(model, tokenizer, train, heldout, [], cfg)
    assert report["before"]["preference_accuracy"] == 0.75  # the untrained model's luck on 4 pairs
    assert report["after"]["preference_accuracy"] == 1.0
    assert report["after"]["rejected_logp"] < report["before"]["rejected_logp"]
    again = preference_figures(tuned, encode_pairs(tokenizer, heldout), 256, tokenizer.pad_id)
    assert again["preference_accuracy"] == 1.0


def test_nll_guard_keeps_the_pre_step_model():
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer, quantized=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, heldout = synthetic_pairs()
    validation = [encode_reply(tokenizer, [{"role": "user", "content": q}], k) for q, k in zip(QUESTIONS, KIND, strict=False)]
    cfg = DPOConfig(beta=0.5, lr=3e-2, steps=10, batch_size=4, device="cpu", nll_tolerance=-1.0)
    kept, report = personalize(model, tokenizer, train, heldout, validation, cfg)
    assert report["kept_pre_step_model"] and report["status"].startswith("kept the pre-step model")
    assert all(torch.equal(before[k], v) for k, v in kept.state_dict().items())
