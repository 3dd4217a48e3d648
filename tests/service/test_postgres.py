"""The same service on a real PostgreSQL server: migrations, memory, isolation, erasure, races."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from bitzero.service.app import create_app
from bitzero.service.auth import create_key, ensure_user
from bitzero.service.db import make_engine, migrate, session_factory, transaction
from bitzero.service.settings import Settings
from bitzero.service.store import UserData, purge_expired


def test_migrations_create_the_schema(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    migrate(engine)  # idempotent
    assert set(inspect(engine).get_table_names()) == {
        "alembic_version", "users", "api_keys", "privacy_settings", "conversations", "messages", "memories", "feedback",
        "rate_buckets"}
    engine.dispose()


def test_replicas_starting_at_once_migrate_once(postgres_url: str) -> None:
    """A first deploy: several replicas (and the purge job) run the migrations at the same moment."""
    engines = [make_engine(postgres_url) for _ in range(4)]
    with ThreadPoolExecutor(len(engines)) as pool:
        list(pool.map(migrate, engines))  # re-raises the first failure
    assert "memories" in inspect(engines[0]).get_table_names()
    for engine in engines:
        engine.dispose()


def test_service_on_postgres(postgres_url: str, settings: Settings, model, embedder, rows_mentioning) -> None:
    on_pg = Settings(**{**settings.__dict__, "database_url": postgres_url})
    with TestClient(create_app(on_pg, model=model, embedder=embedder)) as client:
        # Two first requests of a new user at once must not collide on creating the user.
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: client.get("/v1/privacy").status_code, range(4)))
        assert codes == [200] * 4
        with transaction(client.app.state.service.sessions) as session:
            token, _ = create_key(session, "bob")
        for text in ("My name is Ana and I live in Porto.", "I live in Berlin now."):
            reply = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": text}]})
            assert reply.status_code == 200, reply.text
        client.post("/v1/feedback", json={"message_id": reply.json()["id"], "score": 1})
        live = [m["content"] for m in client.get("/v1/memories").json()["data"]]
        assert live == ["The user's name is Ana.", "The user lives in Berlin now."]
        bob = {"Authorization": f"Bearer {token}"}
        assert client.get("/v1/memories", headers=bob).json()["data"] == []
        found = client.get("/v1/memories/search", params={"q": "city"}).json()["data"]
        assert found[0]["content"] == "The user lives in Berlin now."
        with transaction(client.app.state.service.sessions) as session:
            assert purge_expired(session)["messages"] == 0
        assert client.delete("/v1/me").status_code == 200
        assert rows_mentioning(postgres_url, "local") == {}
        assert rows_mentioning(postgres_url, "bob") == {"users": 1, "api_keys": 1, "rate_buckets": 1}


def test_user_data_queries_are_scoped(postgres_url: str, embedder) -> None:
    from bitzero.companion.extraction import Candidate

    engine = make_engine(postgres_url)
    migrate(engine)
    sessions = session_factory(engine)
    session: Session
    with transaction(sessions) as session:
        for name in ("alice", "bob"):
            ensure_user(session, name)
        alice, bob = UserData(session, "alice"), UserData(session, "bob")
        _, row = alice.remember(Candidate("fact", "home", "The user lives in Oslo.", 7), embedder.encode(["Oslo"])[0])
        assert bob.memory(row.id) is None and not bob.delete_memory(row.id)
        assert bob.search(embedder.encode(["Oslo"])[0], 5) == []
        assert alice.memory(row.id) is not None
    engine.dispose()


def test_rate_limit_holds_across_replicas(postgres_url: str, settings: Settings, model, embedder) -> None:
    """Three replicas on one PostgreSQL database (the shared store is the default there), twelve
    requests of one user at once: exactly the limit's five get through."""
    on_pg = settings.replace(database_url=postgres_url, rate_limit_per_minute=5)
    assert on_pg.shared_rate_limit
    clients = [TestClient(create_app(on_pg, model=model, embedder=embedder)) for _ in range(3)]
    for client in clients:
        client.__enter__()
    try:
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda i: clients[i % 3].get("/v1/memories").status_code, range(12)))
    finally:
        for client in clients:
            client.__exit__(None, None, None)
    assert sorted(codes) == [200] * 5 + [429] * 7
