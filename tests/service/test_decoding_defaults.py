"""Decoding defaults per model: the service's settings, a bundle's own over them, a request's own
over both; stated in /v1/models; a reply ends after the default's finished sentences."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bitzero.companion.decoding import DecodingError
from bitzero.service.app import create_app
from bitzero.service.model import ModelSet, Served
from bitzero.service.settings import Settings, SettingsError
from tests.service.conftest import FakeModel

CHAT = "/v1/chat/completions"


class Recording(FakeModel):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked: list[dict[str, Any]] = []

    def stream(self, prompt_ids, **options: Any) -> Iterator:
        self.asked.append(options)
        return super().stream(prompt_ids, **options)


@pytest.fixture
def models() -> tuple[Recording, Recording]:
    return Recording(model_id="bitzero-1111aaaa"), Recording(model_id="bitzero-2222bbbb")


@pytest.fixture
def client(settings: Settings, models: tuple[Recording, Recording], embedder) -> Iterator[TestClient]:
    plain, tuned = models
    served = ModelSet([Served("bitzero-student-nbits", plain, champion=True),
                       Served("bitzero-teacher-int4", tuned, decoding={"temperature": 0.2, "max_sentences": 1})])
    with TestClient(create_app(settings.replace(temperature=0.5, top_k=40, max_sentences=0), models=served,
                               embedder=embedder)) as test_client:
        yield test_client


def test_models_state_each_models_defaults(client: TestClient) -> None:
    listed = {m["id"]: m["decoding"] for m in client.get("/v1/models").json()["data"]}
    assert (listed["bitzero-student-nbits"]["temperature"], listed["bitzero-student-nbits"]["max_sentences"]) == (0.5, 0)
    assert listed["bitzero-teacher-int4"]["temperature"] == 0.2 and listed["bitzero-teacher-int4"]["top_k"] == 40


def test_a_requests_own_settings_win(client: TestClient, models: tuple[Recording, Recording]) -> None:
    plain, tuned = models
    client.post(CHAT, json={"messages": [{"role": "user", "content": "Hello there."}]})
    client.post(CHAT, json={"model": "bitzero-teacher-int4", "temperature": 1.1, "top_k": 0,
                            "messages": [{"role": "user", "content": "Hello there."}]})
    assert (plain.asked[0]["sampling"].temperature, plain.asked[0]["sampling"].top_k) == (0.5, 40)
    assert (tuned.asked[0]["sampling"].temperature, tuned.asked[0]["sampling"].top_k) == (1.1, 0)


def test_a_reply_ends_after_the_models_finished_sentences(client: TestClient) -> None:
    body = {"model": "bitzero-teacher-int4", "messages": [{"role": "user", "content": "Fine. And you? Good."}]}
    reply = client.post(CHAT, json=body).json()
    assert reply["choices"][0] == {"index": 0, "message": {"role": "assistant", "content": "You said: Fine."},
                                   "finish_reason": "stop"}
    streamed = client.post(CHAT, json={**body, "stream": True}).text
    assert '"content":" And"' not in streamed and '"finish_reason":"stop"' in streamed


def test_impossible_defaults_fail_at_start(settings: Settings, embedder) -> None:
    with pytest.raises(SettingsError, match=r"impossible decoding settings: BITZERO_TOP_P=0.0 \(must be in \(0, 1\]\)"):
        settings.replace(top_p=0.0)
    broken = ModelSet([Served("bitzero-x", FakeModel(), champion=True, decoding={"temprature": 1})])
    with pytest.raises(DecodingError, match="temprature"), TestClient(create_app(settings, models=broken,
                                                                                  embedder=embedder)):
        pass
