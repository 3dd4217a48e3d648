"""The detected emotion shapes the prompt (nothing is glued before the model's words); it is
stored only with the user's consent."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bitzero.companion.emotion import LABELS, EmotionClassifier, EmotionDetector
from bitzero.service.app import create_app

SAD = "I lost my job today and I feel awful and hopeless."


@pytest.fixture
def sad_client(settings, model, embedder):
    """A prototype classifier: sadness along the embedding of a sad sentence, neutral otherwise."""
    weights = np.zeros((embedder.dimensions, len(LABELS)), dtype=np.float32)
    weights[:, LABELS.index("sadness")] = 20 * embedder.encode([SAD])[0]
    bias = np.zeros(len(LABELS), dtype=np.float32)
    bias[LABELS.index("sadness")] = -10.0
    detector = EmotionDetector(EmotionClassifier(weights, bias))
    with TestClient(create_app(settings, model=model, embedder=embedder, detector=detector)) as client:
        yield client


def _say(client: TestClient, text: str) -> dict:
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": text}]})
    assert response.status_code == 200, response.text
    return response.json()


def test_emotion_shapes_the_reply_but_is_not_stored_without_consent(sad_client: TestClient, model) -> None:
    reply = _say(sad_client, SAD)
    assert reply["emotion"] == "sadness"
    assert reply["choices"][0]["message"]["content"] == f"You said: {SAD}"  # the model's words alone
    assert "The user seems to feel sadness (strong)" in model.prompts[-1]
    export = sad_client.get("/v1/export").json()
    assert all(m["emotion"] is None for m in export["messages"])
    assert [m for m in export["memories"] if m["category"] == "emotion"] == []
    calm = _say(sad_client, "The train leaves at nine.")
    assert calm["emotion"] == "neutral" and calm["choices"][0]["message"]["content"].startswith("You said:")


def test_emotion_is_remembered_with_consent_and_forgotten_when_withdrawn(sad_client: TestClient) -> None:
    sad_client.patch("/v1/privacy", json={"remember_emotions": True})
    _say(sad_client, SAD)
    export = sad_client.get("/v1/export").json()
    assert [m["emotion"] for m in export["messages"] if m["role"] == "user"] == ["sadness"]
    assert any(m["category"] == "emotion" and "sadness" in m["content"] for m in export["memories"])
    sad_client.patch("/v1/privacy", json={"remember_emotions": False})
    export = sad_client.get("/v1/export").json()
    assert all(m["emotion"] is None for m in export["messages"])
    assert [m for m in export["memories"] if m["category"] == "emotion"] == []
