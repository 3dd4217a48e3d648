"""The per-process memory index cache never serves stale memories, even to a second replica;
and the migrations build exactly the schema the code declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient

from bitzero.service.app import create_app
from bitzero.service.db import make_engine, migrate
from bitzero.service.tables import Base


def _search(client: TestClient, q: str) -> list[str]:
    response = client.get("/v1/memories/search", params={"q": q, "limit": 10})
    assert response.status_code == 200, response.text
    return [m["content"] for m in response.json()["data"]]


def test_cache_serves_hits_and_sees_every_change_from_another_replica(settings, model, embedder) -> None:
    with TestClient(create_app(settings, model=model, embedder=embedder)) as one, \
         TestClient(create_app(settings, model=model, embedder=embedder)) as two:
        one.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "I love tea. I live in Porto."}]})
        assert sorted(_search(one, "tea")) == ["The user lives in Porto.", "The user loves tea."]
        cache = one.app.state.service.memory_cache
        cached = cache._entries["local"][1]
        _search(one, "city")
        assert cache._entries["local"][1] is cached  # a hit: nothing changed

        tea = next(m for m in two.get("/v1/memories").json()["data"] if "tea" in m["content"])
        two.patch(f"/v1/memories/{tea['id']}", json={"content": "The user loves coffee."})
        assert "The user loves coffee." in _search(one, "coffee")
        two.delete(f"/v1/memories/{tea['id']}")
        assert _search(one, "coffee") == ["The user lives in Porto."]
        two.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "I live in Berlin now."}]})
        assert _search(one, "city") == ["The user lives in Berlin now."]
        two.delete("/v1/me")
        assert _search(one, "city") == []
        # The last access a search refreshes is mirrored in the cached index.
        one.post("/v1/memories", json={"content": "The user collects stamps."})
        _search(one, "stamps")
        index = cache._entries["local"][1]
        row = one.get("/v1/memories").json()["data"][0]
        assert index.last_accessed[0].isoformat() == row["last_accessed"]


def test_migrations_match_the_declared_schema(settings) -> None:
    engine = make_engine(settings.database_url)
    migrate(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()
