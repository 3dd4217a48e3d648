"""API keys and per-user isolation: one user can never read, search, edit or erase another's data."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bitzero.service.app import create_app
from bitzero.service.auth import create_key, list_keys, revoke_key, verify
from bitzero.service.db import make_engine, migrate, session_factory, transaction
from bitzero.service.settings import Settings, SettingsError
from bitzero.service.tables import ApiKey


def _key(settings: Settings, user: str | None = None) -> str:
    engine = make_engine(settings.database_url)
    migrate(engine)
    with transaction(session_factory(engine)) as session:
        token, _ = create_key(session, user, "test")
    engine.dispose()
    return token


def _chat(client: TestClient, token: str | None, text: str) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.post("/v1/chat/completions", headers=headers, json={"messages": [{"role": "user", "content": text}]})
    assert response.status_code == 200, response.text
    return response.json()


def test_keys_are_stored_hashed_and_verify_until_revoked(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        token, info = create_key(session, "alice", "laptop")
    with transaction(sessions) as session:
        row = session.get(ApiKey, info.id)
        assert token not in (row.digest, row.prefix) and token[3:].startswith(row.prefix)
        assert verify(session, token) == "alice"
        assert verify(session, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
        assert verify(session, "bz-nothing") is None
        assert revoke_key(session, info.prefix) == 1
    with transaction(sessions) as session:
        assert verify(session, token) is None
        assert list_keys(session, "alice")[0].revoked_at is not None


def test_keys_required_when_not_single_user(settings: Settings, model, embedder) -> None:
    closed = Settings(**{**settings.__dict__, "single_user": False})
    token = _key(closed, "bob")
    with TestClient(create_app(closed, model=model, embedder=embedder)) as client:
        missing = client.get("/v1/models")
        assert missing.status_code == 401 and "API key is required" in missing.json()["error"]["message"]
        assert client.get("/v1/models", headers={"Authorization": "Bearer bz-wrongwrongwrong"}).status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Basic abc"}).status_code == 401
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_single_user_mode_is_refused_off_loopback() -> None:
    with pytest.raises(SettingsError, match="loopback"):
        Settings(host="0.0.0.0")
    assert Settings(host="0.0.0.0", single_user=False).host == "0.0.0.0"


def test_settings_come_from_the_environment_and_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BITZERO_PORT", "9000")
    monkeypatch.setenv("BITZERO_SINGLE_USER", "false")
    monkeypatch.setenv("BITZERO_BUNDLE", "/srv/bundle")  # the old single-bundle name still works
    settings = Settings.from_env(host="0.0.0.0")
    assert (settings.port, settings.single_user, settings.bundles, settings.host) == (
        9000, False, Path("/srv/bundle"), "0.0.0.0")
    monkeypatch.setenv("BITZERO_PORT", "eighty")
    with pytest.raises(SettingsError, match="BITZERO_PORT='eighty': Input should be a valid integer"):
        Settings.from_env()
    monkeypatch.setenv("BITZERO_PORT", "9000")
    monkeypatch.setenv("BITZERO_SINGLE_USER", "ture")  # a typo is an error, not a silent false
    with pytest.raises(SettingsError, match="BITZERO_SINGLE_USER='ture'"):
        Settings.from_env()
    monkeypatch.setenv("BITZERO_SINGLE_USER", "false")
    with pytest.raises(SettingsError, match="limits must be positive"):
        settings.replace(rate_limit_per_minute=0)


def test_users_never_see_each_other(client: TestClient, settings: Settings, model) -> None:
    alice, bob = _key(settings, "alice"), _key(settings, "bob")
    as_alice, as_bob = ({"Authorization": f"Bearer {t}"} for t in (alice, bob))
    reply = _chat(client, alice, "My name is Alice and I love green tea.")
    _chat(client, bob, "My name is Bob and I love black coffee.")
    alice_memories = client.get("/v1/memories", headers=as_alice).json()["data"]
    bob_memories = client.get("/v1/memories", headers=as_bob).json()["data"]
    assert {m["content"] for m in alice_memories} == {"The user's name is Alice.", "The user loves green tea."}
    assert all("Alice" not in m["content"] and "tea" not in m["content"] for m in bob_memories)
    found = client.get("/v1/memories/search", params={"q": "green tea"}, headers=as_bob).json()["data"]
    assert all("tea" not in m["content"] for m in found)
    target = alice_memories[0]["id"]
    assert client.patch(f"/v1/memories/{target}", json={"content": "hacked"}, headers=as_bob).status_code == 404
    assert client.delete(f"/v1/memories/{target}", headers=as_bob).status_code == 404
    feedback = client.post("/v1/feedback", json={"message_id": reply["id"], "score": 1}, headers=as_bob)
    assert feedback.status_code == 404
    # Bob cannot write into Alice's conversation either.
    hijack = client.post("/v1/chat/completions", headers=as_bob, json={
        "messages": [{"role": "user", "content": "hi"}], "conversation_id": reply["conversation_id"]})
    assert hijack.status_code == 404
    client.delete("/v1/me", headers=as_bob)
    assert len(client.get("/v1/memories", headers=as_alice).json()["data"]) == 2
    export = client.get("/v1/export", headers=as_alice).json()
    assert {m["user_id"] for m in export["messages"]} == {"alice"}
    # Bob's key went with his erasure.
    assert client.get("/v1/memories", headers=as_bob).status_code == 401
    # Alice's name reached her prompt, never Bob's.
    assert "Alice" in model.prompts[0]
    assert "Alice" not in model.prompts[1]
