"""The conversation eval through the service's chat path: a looping model is refused, a good one
passes, a garbage-emitting exported bundle is refused; what the service adds (memory recall in a
new conversation) is what the eval sees."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitzero.companion.conversation_eval import Say, Scenario, eval_verdict, figures, load_scenarios
from bitzero.service.chat import Companion
from bitzero.service.db import make_engine, migrate, session_factory
from bitzero.service.model import ModelSet
from bitzero.service.rehearsal import evaluate_bundle, rehearse
from tests.service.conftest import FakeModel

RECALL = Scenario("recall", ((Say("Hi, my name is Ada and I love hiking."),),
                             (Say("What is my name?", ("Ada",)),)), "Ada")


class Looping(FakeModel):
    def answer(self, last_user: str) -> str:
        return "I am here for you. " * 6


class Attentive(FakeModel):
    """Answers from the recap of memories the service put before the turns, else about the message."""

    def answer(self, last_user: str) -> str:
        name = re.search(r"Your name is (\w+)", self.prompts[-1])
        if name and "name" in last_user:
            return f"Your name is {name.group(1)}, of course. How was your week?"
        return f"Thank you for telling me. I hear you about this: {last_user} How can I help?"


@pytest.fixture
def companion_for(tmp_path: Path, embedder) -> Iterator:
    engine = make_engine(f"sqlite:///{tmp_path}/eval.db")
    migrate(engine)

    def build(model: FakeModel) -> Companion:
        return Companion(ModelSet.single(model), embedder, None, session_factory(engine))

    yield build
    engine.dispose()


def test_a_looping_model_is_refused_and_a_good_one_passes(companion_for, embedder) -> None:
    scenarios = load_scenarios()
    verdicts = {}
    for model in (Looping(), Attentive()):
        companion = companion_for(model)
        exchanges = rehearse(companion, companion.models.champion, scenarios)
        assert len(exchanges) == sum(len(c) for s in scenarios for c in s.conversations)
        verdicts[type(model).__name__] = eval_verdict(figures(exchanges, embedder))
    assert verdicts["Looping"] == (False, "conversation eval: loop_rate 1.000 > 0.05")
    assert verdicts["Attentive"] == (True, "conversation eval within limits")


def test_the_eval_sees_what_the_service_recalls_in_a_new_conversation(companion_for, embedder) -> None:
    model = Attentive()
    companion = companion_for(model)
    told, asked = rehearse(companion, companion.models.champion, [RECALL])
    assert model.prompts[1].count("<|im_start|>user") == 1  # a new conversation: the question alone
    assert asked.reply.startswith("Your name is Ada")  # so only memory carried the name into it
    assert figures([told, asked], embedder)["recall_rate"] == 1.0


def test_a_bundle_that_emits_garbage_is_refused(tmp_path: Path, embedder) -> None:
    """A tiny random model exported as the export stage does: its words are noise."""
    torch = pytest.importorskip("torch")
    from bitzero.export.exporter import export_bundle, held_out_inputs
    from tests.export.conftest import tiny_student
    from tests.tiny import tiny_tokenizer

    torch.set_num_threads(1)
    tokenizer_path = tiny_tokenizer().save(tmp_path / "tokenizer.json")
    held_out = held_out_inputs([{"conversation": [{"role": "user", "content": "hello, how are you?"},
                                                  {"role": "assistant", "content": "fine, thanks!"}]}],
                               tiny_tokenizer(), 256, 1, 1)
    export_bundle(tiny_student(block_size=512), tokenizer_path, tmp_path / "student", held_out,
                  variants=("nbits",), greedy_tokens=8)
    result = evaluate_bundle(tmp_path / "student", embedder, scenarios=[RECALL], decoding={"max_tokens": 24})
    assert not result["passed"] and "garbage_rate" in result["reason"]
    assert result["decoding"]["max_tokens"] == 24
    assert [t["message"] for t in result["transcript"]] == ["Hi, my name is Ada and I love hiking.", "What is my name?"]
