"""Privacy settings, export, erasure (no row left in any table), retention, feedback as training records."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from bitzero.data.records import read_jsonl, write_jsonl
from bitzero.service.db import make_engine, session_factory, transaction
from bitzero.service.store import purge_expired, training_records
from bitzero.service.tables import Memory, Message, utcnow


def _say(client: TestClient, content: str, conversation: str | None = None) -> dict:
    body = {"messages": [{"role": "user", "content": content}]}
    if conversation:
        body["conversation_id"] = conversation
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_erasure_leaves_no_row_behind(client: TestClient, settings, rows_mentioning) -> None:
    client.patch("/v1/privacy", json={"remember_emotions": True, "allow_training": True})
    first = _say(client, "My name is Ana. I love green tea and I live in Porto.")
    _say(client, "I have a cat named Mia.", first["conversation_id"])
    assert client.post("/v1/feedback", json={"message_id": first["id"], "score": 1}).status_code == 201
    client.post("/v1/memories", json={"content": "Ana plays the cello", "importance": 7})
    with transaction(client.app.state.service.sessions) as session:
        write_jsonl(settings.feedback_export, training_records(session))
    assert len(read_jsonl(settings.feedback_export)[0]) == 1
    assert rows_mentioning(settings.database_url, "local")["memories"] >= 4
    erased = client.delete("/v1/me").json()["erased"]
    assert erased["training_records"] == 1 and erased["messages"] == 4
    assert rows_mentioning(settings.database_url, "local") == {}
    assert read_jsonl(settings.feedback_export)[0] == []


def test_export_holds_everything_about_the_user(client: TestClient) -> None:
    reply = _say(client, "My name is Ana and I hate loud music.")
    client.post("/v1/feedback", json={"message_id": reply["id"], "score": -1, "text": "Say hello first."})
    data = client.get("/v1/export").json()
    assert data["user_id"] == "local"
    assert {m["role"] for m in data["messages"]} == {"user", "assistant"}
    assert {m["content"] for m in data["memories"]} == {"The user's name is Ana.", "The user hates loud music."}
    assert len(data["memories"][0]["embedding"]) == 384
    assert data["feedback"][0]["text"] == "Say hello first."
    assert data["privacy_settings"][0]["retention_days"] == 365


def test_privacy_settings_are_obeyed(client: TestClient) -> None:
    assert client.get("/v1/privacy").json()["remember_emotions"] is False  # special category: opt-in
    settings = client.patch("/v1/privacy", json={"store_conversations": False, "extract_personal_info": False}).json()
    assert settings["store_conversations"] is False
    reply = _say(client, "My name is Ana and I love tea.")
    assert reply["conversation_id"] is None
    assert client.get("/v1/memories").json()["data"] == []
    assert client.get("/v1/export").json()["messages"] == []
    refused = client.post("/v1/feedback", json={"message_id": reply["id"], "score": 1})
    assert refused.status_code == 404 and "store_conversations" in refused.json()["error"]["message"]
    bad = client.patch("/v1/privacy", json={"retention_days": 0, "share_with_ads": True})
    assert bad.status_code == 400 and "retention_days" in bad.json()["error"]["message"]


def test_retention_purges_old_rows_only(client: TestClient, settings) -> None:
    client.patch("/v1/privacy", json={"retention_days": 30})
    old = _say(client, "My name is Ana.")
    new = _say(client, "I love tea.")
    sessions = client.app.state.service.sessions
    long_ago = utcnow() - timedelta(days=31)
    with transaction(sessions) as session:
        session.execute(update(Message).where(Message.conversation_id == old["conversation_id"]).values(created_at=long_ago))
        session.execute(update(Memory).where(Memory.slot == "name").values(created_at=long_ago))
    with transaction(sessions) as session:
        counts = purge_expired(session)
    assert counts["messages"] == 2 and counts["memories"] == 1
    with transaction(sessions) as session:
        left = session.scalars(select(Message.conversation_id)).all()
    assert set(left) == {new["conversation_id"]}
    assert [m["content"] for m in client.get("/v1/memories").json()["data"]] == ["The user loves tea."]


def test_feedback_becomes_training_records_only_with_consent(client: TestClient) -> None:
    good = _say(client, "Tell me something nice.")
    bad = _say(client, "How are you?")
    silent = _say(client, "Hello?")
    client.post("/v1/feedback", json={"message_id": good["id"], "score": 1})
    client.post("/v1/feedback", json={"message_id": bad["id"], "score": -1, "text": "I'm well, thanks for asking!"})
    client.post("/v1/feedback", json={"message_id": silent["id"], "score": -1})
    sessions = client.app.state.service.sessions
    with transaction(sessions) as session:
        assert training_records(session) == []  # allow_training is off by default
    client.patch("/v1/privacy", json={"allow_training": True})
    with transaction(sessions) as session:
        records = training_records(session)
    # Each starts with the system turn the reply was generated from; a bare thumbs-down keeps the
    # rejected reply, marked as never to imitate.
    assert all(r["conversation"][0]["role"] == "system" for r in records)
    assert [r["conversation"][1:] for r in records] == [
        [{"role": "user", "content": "Tell me something nice."},
         {"role": "assistant", "content": "You said: Tell me something nice."}],
        [{"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "I'm well, thanks for asking!"}],
        [{"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "You said: Hello?"}],
    ]
    assert [r["feedback"] for r in records] == [
        {"score": 1, "corrected": False},
        {"score": -1, "corrected": True, "rejected": "You said: How are you?"},
        {"score": -1, "corrected": False, "rejected": "You said: Hello?"},
    ]
    assert all(r["type"] == "conversation" and r["source"] == "feedback" for r in records)
    assert client.post("/v1/feedback", json={"message_id": good["id"], "score": 5}).status_code == 400


def test_database_survives_a_restart(settings, model, embedder) -> None:
    from bitzero.service.app import create_app

    with TestClient(create_app(settings, model=model, embedder=embedder)) as client:
        _say(client, "My name is Ana.")
    with TestClient(create_app(settings, model=model, embedder=embedder)) as client:
        _say(client, "Do you remember me?")
        assert "Your name is Ana." in model.prompts[-1]
    engine = make_engine(settings.database_url)
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert session_factory(engine)
    engine.dispose()


def test_a_thumbs_down_exports_a_pair_with_the_prompt_the_reply_came_from(client: TestClient) -> None:
    from bitzero.data.feedback import preference_pair

    client.patch("/v1/privacy", json={"allow_training": True})
    first = _say(client, "My name is Ana and I love green tea.")
    reply = _say(client, "What should I drink?", first["conversation_id"])
    client.post("/v1/feedback", json={"message_id": reply["id"], "score": -1})
    client.post("/v1/feedback", json={"message_id": first["id"], "score": -1, "text": "Nice to meet you, Ana!"})
    with transaction(client.app.state.service.sessions) as session:
        records = {r["id"]: r for r in training_records(session)}
    pairs = sorted((preference_pair(r) for r in records.values()), key=lambda p: p.chosen is None)
    corrected, bare = pairs
    assert corrected.chosen == "Nice to meet you, Ana!" and bare.chosen is None
    assert bare.rejected == reply["choices"][0]["message"]["content"]
    system, recap = bare.prompt[:2]
    assert system["role"] == "system" and "BitZero" in system["content"]
    assert recap["role"] == "assistant" and "green tea" in recap["content"]  # the memories, as the model saw them
    assert [t["content"] for t in bare.prompt[2:]] == ["What should I drink?"]  # what the client sent, as fitted
