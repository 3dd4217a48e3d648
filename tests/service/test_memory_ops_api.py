"""Memory endpoints, prompt contents, operations endpoints, limits and bad input."""

from __future__ import annotations

import contextlib

import pytest
from fastapi.testclient import TestClient

from bitzero.service.app import create_app
from bitzero.service.settings import Settings


def _say(client: TestClient, content: str, **extra: object) -> dict:
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": content}], **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_memories_list_search_edit_delete(client: TestClient) -> None:
    _say(client, "My name is Ana. I love green tea. I live in Porto. I work as a nurse.")
    memories = client.get("/v1/memories").json()["data"]
    assert len(memories) == 4
    found = client.get("/v1/memories/search", params={"q": "what does she drink", "limit": 2}).json()["data"]
    assert found[0]["content"] == "The user loves green tea." and len(found) == 2
    tea = found[0]["id"]
    edited = client.patch(f"/v1/memories/{tea}", json={"content": "The user loves jasmine tea.", "importance": 8})
    assert edited.status_code == 200 and edited.json()["importance"] == 8
    again = client.get("/v1/memories/search", params={"q": "jasmine", "limit": 1}).json()["data"]
    assert again[0]["id"] == tea  # the embedding followed the edit
    assert client.delete(f"/v1/memories/{tea}").status_code == 204
    assert client.delete(f"/v1/memories/{tea}").status_code == 404
    assert tea not in {m["id"] for m in client.get("/v1/memories").json()["data"]}
    assert client.get("/v1/memories/search", params={"q": " "}).status_code == 400


def test_contradiction_invalidates_and_the_prompt_carries_memories(client: TestClient, model) -> None:
    _say(client, "My name is Ana and I live in Porto.")
    _say(client, "I live in Berlin now.")
    everything = client.get("/v1/memories", params={"include_invalid": True}).json()["data"]
    porto = next(m for m in everything if "Porto" in m["content"])
    berlin = next(m for m in everything if "Berlin" in m["content"])
    assert porto["invalidated_at"] is not None and porto["superseded_by"] == berlin["id"]
    assert [m["content"] for m in client.get("/v1/memories").json()["data"]] == [
        "The user's name is Ana.", "The user lives in Berlin now."]
    _say(client, "Where should I travel?")
    prompt = model.prompts[-1]
    assert "Your name is Ana. You live in Berlin now." in prompt and "Berlin" in prompt and "Porto" not in prompt


def test_operations_endpoints(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True, "model": True, "database": True, "capacity": True}
    _say(client, "hello")
    metrics = client.get("/metrics").text
    assert 'bitzero_requests_total{route="/v1/chat/completions",status="200"} 1.0' in metrics
    assert "bitzero_tokens_generated_total" in metrics and "bitzero_time_to_first_token_seconds_count 1.0" in metrics
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_bad_requests_get_clear_4xx(client: TestClient) -> None:
    cases = [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
        ({"messages": [{"role": "user", "content": "x"}], "top_p": 0}, "top_p"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 4000}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "last message"),
        ({"messages": [{"role": "user", "content": "x"}], "conversation_id": "../etc"}, "conversation_id"),
    ]
    for body, word in cases:
        response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 400, (body, response.text)
        assert word in response.json()["error"]["message"], (body, response.text)
    broken = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400
    too_big = client.post("/v1/chat/completions", content=b"x" * 300_000, headers={"content-type": "application/json"})
    assert too_big.status_code == 413 and "bytes" in too_big.json()["error"]["message"]
    assert client.post("/v1/feedback", json={"message_id": "nope", "score": 1}).status_code == 404


@pytest.mark.parametrize("store", ["memory", "database"])
def test_rate_limit_per_key(settings: Settings, model, embedder, store: str) -> None:
    """3 a minute per key; with the database store, across two replicas (apps on one database)."""
    limited = settings.replace(rate_limit_per_minute=3, rate_limit_store=store)
    replicas = 2 if store == "database" else 1
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(TestClient(create_app(limited, model=model, embedder=embedder)))
                   for _ in range(replicas)]
        codes = [clients[i % replicas].get("/v1/memories").status_code for i in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        refused = clients[-1].get("/v1/memories")
        assert "rate limit" in refused.json()["error"]["message"] and int(refused.headers["retry-after"]) >= 1
        assert clients[0].get("/healthz").status_code == 200  # operations are never limited
