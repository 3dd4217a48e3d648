"""Conversations people come back to: listed with titles (most recently active first), restored in full, resumed,
deleted; only the owner's, and gone with the user's erasure."""

from __future__ import annotations

from fastapi.testclient import TestClient

from bitzero.service.app import create_app
from bitzero.service.settings import Settings
from tests.service.test_auth_isolation import _key

CHAT = "/v1/chat/completions"


def _say(client: TestClient, text: str, conversation: str | None = None, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"messages": [{"role": "user", "content": text}], "conversation_id": conversation}
    response = client.post(CHAT, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["conversation_id"]


def test_a_conversation_is_listed_restored_resumed_and_deleted(client: TestClient) -> None:
    first = _say(client, "Hi, my name is Ada and I love hiking in the mountains every single weekend of the year.")
    second = _say(client, "What a day.")
    assert _say(client, "Tell me more.", first) == first  # resumed by its id
    listed = client.get("/v1/conversations").json()["data"]
    assert [c["id"] for c in listed] == [first, second]  # the resumed one is the most recently active
    assert listed[0]["title"] == "Hi, my name is Ada and I love hiking in the mountains every…"
    assert listed[0]["message_count"] == 4 and listed[1]["title"] == "What a day."
    restored = client.get(f"/v1/conversations/{first}").json()
    assert [(m["role"], m["content"]) for m in restored["messages"]][2:] == [
        ("user", "Tell me more."), ("assistant", "You said: Tell me more.")]
    assert client.delete(f"/v1/conversations/{first}").status_code == 204
    assert [c["id"] for c in client.get("/v1/conversations").json()["data"]] == [second]
    assert client.get(f"/v1/conversations/{first}").status_code == 404
    assert client.delete(f"/v1/conversations/{first}").status_code == 404
    assert client.post(CHAT, json={"messages": [{"role": "user", "content": "hi"}], "conversation_id": first}
                       ).status_code == 404  # a deleted conversation cannot be resumed


def test_only_the_owner_sees_a_conversation_and_erasure_removes_them(settings: Settings, model, embedder) -> None:
    keyed = settings.replace(single_user=False)
    alice, bob = _key(keyed, "alice"), _key(keyed, "bob")
    with TestClient(create_app(keyed, model=model, embedder=embedder)) as client:
        theirs = _say(client, "A secret plan.", token=alice)
        as_bob = {"Authorization": f"Bearer {bob}"}
        as_alice = {"Authorization": f"Bearer {alice}"}
        assert client.get("/v1/conversations", headers=as_bob).json()["data"] == []
        assert client.get(f"/v1/conversations/{theirs}", headers=as_bob).status_code == 404
        assert client.delete(f"/v1/conversations/{theirs}", headers=as_bob).status_code == 404
        assert client.get("/v1/conversations", headers=as_alice).json()["data"][0]["id"] == theirs
        assert client.delete("/v1/me", headers=as_alice).status_code == 200
        alice_again = _key(keyed, "alice")
        assert client.get("/v1/conversations", headers={"Authorization": f"Bearer {alice_again}"}).json()["data"] == []
