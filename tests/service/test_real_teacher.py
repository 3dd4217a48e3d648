"""The companion on the real SmolLM2-135M-Instruct teacher (4-bit ONNX, greedy): what the user
said in one conversation reaches the next through memory and the recap before the turns, and the replies are
English sentences, not code. Slow: the bundle is exported once and cached (tests/real_teacher.py)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from bitzero.companion.conversation_eval import claims_name
from bitzero.service.app import create_app
from bitzero.service.settings import Settings

pytestmark = pytest.mark.timeout(900)
CODE = re.compile(r"```|[{};<>=\\]|\bdef |\bimport |\breturn\b|</?\w+>")
WORD = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)*")


def _is_english(reply: str) -> bool:
    """Mostly dictionary-shaped words and sentence punctuation, nothing that reads as code or markup."""
    words = reply.split()
    plain = [w for w in words if WORD.fullmatch(w.strip(".,!?:;\"'()*-–—…"))]
    return len(words) >= 3 and len(plain) >= 0.8 * len(words) and not CODE.search(reply)


def test_the_real_teacher_keeps_a_name_for_a_new_conversation_and_never_claims_it(settings: Settings, embedder) -> None:
    from bitzero.model.pretrained import PretrainedError
    from tests.real_teacher import real_teacher_bundle

    try:
        bundle = real_teacher_bundle()
    except PretrainedError as exc:
        pytest.skip(f"the real teacher is not installed: {exc}")
    app = create_app(settings.replace(bundles=bundle), embedder=embedder)
    with TestClient(app) as client:
        def say(text: str, conversation: str | None) -> dict:
            body = {"messages": [{"role": "user", "content": text}], "temperature": 0, "max_tokens": 80,
                    "conversation_id": conversation}
            response = client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            reply = response.json()
            print(f"\nUSER: {text}\nBITZERO ({reply['model']}): {reply['choices'][0]['message']['content']}")
            return reply

        first = say("Hi, my name is Ada and I love hiking.", None)
        conversation = first["conversation_id"]
        replies = [first, say("My dog died yesterday and I feel awful.", conversation),
                   say("Can you help me plan a calm evening?", conversation)]
        asked = say("What is my name?", None)  # a new conversation: only memory carries the name
        assert asked["conversation_id"] != conversation
        # The recap in the prompt carries the name; the reply may not take it as its own (barred at
        # decoding). Whether the 135M teacher says it back is the conversation eval's recall rate.
        assert not claims_name(asked["choices"][0]["message"]["content"], "Ada")
        for reply in [*replies, asked]:
            assert reply["model"] == "bitzero-teacher-int4"
            assert _is_english(reply["choices"][0]["message"]["content"]), reply["choices"][0]["message"]["content"]
        memories = [m["content"] for m in client.get("/v1/memories").json()["data"]]
        assert "The user's name is Ada." in memories
