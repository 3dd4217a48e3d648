"""Erasure that nothing undoes or stalls (second review, findings 1, 2 and 6): every write route
racing ``DELETE /v1/me``, a SQLite reader held open during an erasure, an unwritable ledger."""

from __future__ import annotations

import http.client
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bitzero.data.records import read_jsonl, write_jsonl
from bitzero.service.app import create_app
from bitzero.service.auth import create_key
from bitzero.service.db import make_engine, migrate, session_factory, transaction
from bitzero.service.gate import Erased, UserGates
from bitzero.service.settings import Settings
from bitzero.service.store import UserData, training_records
from tests.service.conftest import serving

CHAT = "/v1/chat/completions"
TRIALS_PER_ROUTE = 5
WRITE_ROUTES = ("add memory", "search memories", "edit memory", "delete memory", "feedback", "privacy",
                "read privacy", "export", "chat")


def _call(base: str, method: str, path: str, key: str | None = None, body: dict | None = None,
          timeout: float = 30) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=timeout)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    connection.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, json.loads(data) if data else {}


@pytest.fixture
def keyed(settings: Settings, model, embedder) -> Iterator[tuple[str, Callable[[], tuple[str, str]]]]:
    """A keyed server on loopback, and a maker of fresh users: (user id, key)."""
    app = create_app(settings.replace(single_user=False, rate_limit_per_minute=10_000), model=model,
                     embedder=embedder)

    def new_user() -> tuple[str, str]:
        with transaction(app.state.service.sessions) as session:
            token, info = create_key(session)
        return info.user_id, token

    with serving(app) as base:
        yield base, new_user


def _write_routes(base: str, key: str) -> dict[str, tuple[str, str, dict | None]]:
    """Every route that writes a user's rows, with what it needs made beforehand."""
    reply = _call(base, "POST", CHAT, key, {"messages": [{"role": "user", "content": "I like tea."}]})[1]
    memory = _call(base, "POST", "/v1/memories", key, {"content": "Ana plays the cello"})[1]
    return {
        "add memory": ("POST", "/v1/memories", {"content": "Ana lives in Porto"}),
        "search memories": ("GET", "/v1/memories/search?q=cello", None),
        "edit memory": ("PATCH", f"/v1/memories/{memory['id']}", {"content": "Ana plays the viola"}),
        "delete memory": ("DELETE", f"/v1/memories/{memory['id']}", None),
        "feedback": ("POST", "/v1/feedback", {"message_id": reply["id"], "score": 1}),
        "privacy": ("PATCH", "/v1/privacy", {"retention_days": 30}),
        "read privacy": ("GET", "/v1/privacy", None),
        "export": ("GET", "/v1/export", None),
        "chat": ("POST", CHAT, {"messages": [{"role": "user", "content": "My name is Ana."}]}),
    }


def _race(base: str, key: str, request: tuple[str, str, dict | None], delay: float) -> tuple[int, int]:
    """The request sent, then ``DELETE /v1/me`` ``delay`` seconds later: both statuses."""
    statuses: dict[str, int] = {}

    def write() -> None:
        statuses["write"] = _call(base, request[0], request[1], key, request[2])[0]

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(delay)
    erase = _call(base, "DELETE", "/v1/me", key)[0]
    writer.join(30)
    return statuses["write"], erase


def test_no_write_outlives_a_concurrent_erasure(keyed, settings: Settings, rows_mentioning) -> None:
    base, new_user = keyed
    rng = random.Random(24)
    left_behind = []
    for trial in range(TRIALS_PER_ROUTE):
        for name in WRITE_ROUTES:
            user, key = new_user()
            method, path, body = _write_routes(base, key)[name]
            write, erase = _race(base, key, (method, path, body), rng.uniform(0, 0.015))
            assert erase == 200 and write in (200, 201, 204, 401, 404, 409), (name, write, erase)
            found = rows_mentioning(settings.database_url, user)
            if found:
                left_behind.append((trial, name, write, found))
    assert left_behind == []


def test_a_held_reader_stalls_neither_erasure_nor_others(keyed, settings: Settings) -> None:
    base, new_user = keyed
    (_, ana), (_, bob) = new_user(), new_user()
    secret = "Zanzibar-7f3a9c"
    assert _call(base, "POST", "/v1/memories", ana, {"content": f"Ana's hint is {secret}"})[0] == 201
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    reader = sqlite3.connect(database, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM memories").fetchall()  # a snapshot that pins the WAL
    try:
        others: dict[str, int] = {}

        def bob_writes() -> None:
            others["bob"] = _call(base, "POST", "/v1/memories", bob, {"content": "Bob likes jazz"}, timeout=10)[0]

        writer = threading.Thread(target=bob_writes)
        writer.start()
        status, erased = _call(base, "DELETE", "/v1/me", ana, timeout=10)  # main: blocked 30 s and more
        writer.join(15)
        assert status == 200 and erased["scrubbed"] is False  # the rows are gone; the WAL waits for the reader
        assert others == {"bob": 201}
        assert _call(base, "GET", "/readyz", timeout=5)[0] == 200
        assert _call(base, "GET", "/v1/privacy", ana)[0] == 401  # the key went with the rows
    finally:
        reader.close()
    files = [p for p in database.parent.iterdir() if p.name.startswith(database.name)]
    deadline = time.monotonic() + 20  # the scrubber retries each second once the reader is gone
    while any(secret.encode() in p.read_bytes() for p in files if p.exists()):
        assert time.monotonic() < deadline, "the erased text stayed in the database files"
        time.sleep(0.2)


def test_an_unwritable_ledger_erases_nothing_and_a_retry_erases_all(settings: Settings, model, embedder,
                                                                     rows_mentioning) -> None:
    ledger_dir = settings.erasure_ledger  # a folder where the ledger file should be: appending fails
    ledger_dir.mkdir()
    app = create_app(settings, model=model, embedder=embedder)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.patch("/v1/privacy", json={"allow_training": True})
        reply = client.post(CHAT, json={"messages": [{"role": "user", "content": "My cat is Mia."}]}).json()
        assert client.post("/v1/feedback", json={"message_id": reply["id"], "score": 1}).status_code == 201
        with transaction(app.state.service.sessions) as session:
            write_jsonl(settings.feedback_export, training_records(session))
        before = rows_mentioning(settings.database_url, "local")

        failed = client.delete("/v1/me")
        assert failed.status_code == 503 and "nothing was erased" in failed.json()["error"]["message"]
        assert rows_mentioning(settings.database_url, "local") == before  # retryable: everything still there
        assert "Mia" in settings.feedback_export.read_text()

        ledger_dir.rmdir()
        assert client.delete("/v1/me").status_code == 200
    assert rows_mentioning(settings.database_url, "local") == {}
    assert read_jsonl(settings.feedback_export)[0] == [] and "Mia" not in settings.feedback_export.read_text()
    assert settings.erasure_ledger.read_text().count("feedback-") == 1


def test_a_request_admitted_before_an_erasure_is_refused_after_it() -> None:
    gates = UserGates()
    before = gates.ticket()
    with pytest.raises(RuntimeError), gates.erasure("ana"):
        raise RuntimeError("the ledger was unwritable")  # a failed erasure refuses nobody
    gates.enter("ana", before)
    gates.leave("ana")
    with gates.erasure("ana"):
        pass
    with pytest.raises(Erased):
        gates.enter("ana", before)
    gates.enter("bob", before)  # other users are unaffected
    gates.enter("ana", gates.ticket())  # a request that arrived after the erasure runs


def test_a_late_write_finds_no_user_to_re_create(settings: Settings, rows_mentioning) -> None:
    """What holds across replicas: a write that runs after the erasure committed (on another
    replica, say) is refused by the database's state, not by this process's gate."""
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        _, info = create_key(session)
    with transaction(sessions) as session:
        UserData(session, info.user_id).erase()
    with pytest.raises(Erased), transaction(sessions) as session:
        UserData(session, info.user_id).update_privacy({"retention_days": 30})
    assert rows_mentioning(settings.database_url, info.user_id) == {}
    engine.dispose()
