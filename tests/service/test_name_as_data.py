"""The user's name is data in its memory row (`value`), not parsed out of the sentence: written by
extraction, carried into the prompt, cleared when the user rewrites the sentence, and filled by
migration 0004 for name memories stored before it."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import text

from bitzero.service.db import MIGRATIONS, make_engine, migrate, session_factory, transaction
from bitzero.service.store import UserData


def _say(client: TestClient, content: str) -> None:
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": content}]})
    assert response.status_code == 200, response.text


def test_the_name_is_stored_as_data_and_reaches_the_prompt(client: TestClient, model) -> None:
    _say(client, "Hi, call me jo-ann. I love green tea.")
    memories = {m["slot"]: m for m in client.get("/v1/memories").json()["data"]}
    assert memories["name"]["value"] == "Jo-Ann" and {m["value"] for m in memories.values()} >= {"Jo-Ann", "green tea"}
    _say(client, "What should I drink?")
    assert "Your name is Jo-Ann." in model.prompts[-1] and "You love green tea." in model.prompts[-1]
    assert "I'm Jo-Ann" in model.barred[-1] and " My name is Jo-Ann" in model.barred[-1]  # never said as its own
    edited = client.patch(f"/v1/memories/{memories['name']['id']}", json={"content": "Jo prefers no name."})
    assert edited.status_code == 200 and edited.json()["value"] is None
    _say(client, "And now?")
    assert "Jo-Ann" not in model.prompts[-1]  # the rewritten sentence named nobody
    assert not any("Jo-Ann" in phrase for phrase in model.barred[-1]) and "I love green tea" in model.barred[-1]


def test_the_name_and_a_recalled_liking_are_nudged_in_a_new_conversation(client: TestClient, model) -> None:
    _say(client, "Hi, my name is Ada and I love hiking.")
    _say(client, "What do I love doing?")
    assert {" Ad", " hi"} <= model.recalled[-1], "the first tokens of the name and of the liking (tiny BPE)"
    assert model.opening[-1] and all(piece.startswith("Y") for piece in model.opening[-1]), "answered 'You...'"
    _say(client, "Can you help me plan a trip?")
    assert model.recalled[-1] and not model.opening[-1], "a request is answered by what the companion does"
    _say(client, "Nice weather today, isn't it?")
    assert not model.recalled[-1] and not model.opening[-1], "no question about the user: nothing nudged"
    assert "I love hiking" in model.barred[-1] and "I'm Ada" in model.barred[-1], "never said as its own, on any turn"
    for memory in client.get("/v1/memories").json()["data"]:
        assert client.delete(f"/v1/memories/{memory['id']}").status_code == 204
    _say(client, "What is my name?")
    assert not model.recalled[-1] and not model.opening[-1], "nothing remembered, nothing nudged"


def test_migration_0004_fills_the_value_of_earlier_name_memories(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    engine = make_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
        connection.execute(text("INSERT INTO users (id, created_at, memory_version) VALUES ('ana', '2026-01-01', 0)"))
        for memory_id, slot, content in (("m1", "name", "The user's name is Ana Lima."),
                                         ("m2", "home", "The user lives in Porto.")):
            connection.execute(text(
                "INSERT INTO memories (id, user_id, category, slot, content, importance, embedding, created_at, "
                "last_accessed) VALUES (:id, 'ana', 'fact', :slot, :content, 9, x'', '2026-01-01', '2026-01-01')"),
                {"id": memory_id, "slot": slot, "content": content})
    migrate(engine)
    with transaction(session_factory(engine)) as session:
        assert UserData(session, "ana").name() == "Ana Lima"
        values = dict(session.execute(text("SELECT id, value FROM memories")).all())
    assert values == {"m1": "Ana Lima", "m2": None}
    engine.dispose()
