"""Findings of the adversarial review, each as a test: DNS rebinding, edge-case inputs, a storm of
dropped streams, erasure racing a chat, erased text left in the WAL, writes acknowledged before
they were committed."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bitzero.service.app import create_app
from bitzero.service.settings import Settings
from tests.net import free_port, wait_for_http
from tests.service.conftest import Chunk, FakeModel

CHAT = "/v1/chat/completions"


def _chat(content: str, **extra: object) -> dict:
    return {"messages": [{"role": "user", "content": content}], **extra}


class SlowModel(FakeModel):
    """Streams a long reply, one word every 20 ms: a generation that outlives its client."""

    def __init__(self, words: int = 2000) -> None:
        super().__init__(context_length=4096)
        self.words = words

    def stream(self, prompt_ids: Sequence[int], *, max_tokens: int, **_: object) -> Iterator[Chunk]:
        for index in range(min(self.words, max_tokens)):
            time.sleep(0.02)
            yield Chunk(" word", (index,), None)
        yield Chunk("", (), "length")


# -- DNS rebinding ----------------------------------------------------------------------------

def test_foreign_host_or_origin_is_refused(client: TestClient) -> None:
    assert client.get("/v1/export", headers={"Host": "evil.example:8000"}).status_code == 403
    assert client.get("/", headers={"Host": "rebound.evil.example"}).status_code == 403
    assert client.delete("/v1/me", headers={"Host": "evil.example"}).status_code == 403
    assert client.delete("/v1/me", headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.delete("/v1/me", headers={"Origin": "null"}).status_code == 403
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8000"):
        assert client.get("/v1/privacy", headers={"Host": host}).status_code == 200
    assert client.patch("/v1/privacy", json={"retention_days": 30},
                        headers={"Origin": "http://localhost:8000"}).status_code == 200


def test_keyed_mode_checks_state_changing_routes(settings: Settings, model, embedder) -> None:
    keyed = settings.replace(single_user=False, host="0.0.0.0", allowed_hosts="")
    with TestClient(create_app(keyed, model=model, embedder=embedder)) as client:
        assert client.get("/healthz", headers={"Host": "bitzero.example"}).status_code == 200
        assert client.delete("/v1/me", headers={"Host": "bitzero.example",
                                                "Origin": "https://evil.example"}).status_code == 403
        assert client.delete("/v1/me", headers={"Host": "bitzero.example"}).status_code == 401  # needs a key


# -- edge cases -------------------------------------------------------------------------------

def test_lone_surrogate_is_a_400_and_the_connection_lives(server: str) -> None:
    connection = http.client.HTTPConnection(server.removeprefix("http://"), timeout=10)
    bodies = [b'{"messages": [{"role": "user", "content": "\\ud800"}]}', json.dumps(_chat("hello")).encode()]
    statuses = []
    for body in bodies:  # the same keep-alive connection
        connection.request("POST", CHAT, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
    connection.close()
    assert statuses == [400, 200]


@pytest.mark.parametrize("field", [{"max_tokens": True}, {"max_tokens": 2.0}, {"seed": False}, {"n": True},
                                   {"max_completion_tokens": "3"}, {"stream": "yes"}])
def test_loose_numbers_and_booleans_are_refused(client: TestClient, field: dict) -> None:
    assert client.post(CHAT, json=_chat("hi", **field)).status_code == 400


def test_loose_feedback_score_and_retention_are_refused(client: TestClient) -> None:
    assert client.patch("/v1/privacy", json={"retention_days": True}).status_code == 400
    assert client.post("/v1/feedback", json={"message_id": "x", "score": True}).status_code == 400


def test_streamed_oversized_body_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(80):
            yield b" " * 65536

    response = client.post(CHAT, content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_huge_message_is_refused_before_any_work(client: TestClient, model: FakeModel) -> None:
    start = time.perf_counter()
    response = client.post(CHAT, json=_chat("x" * 190_000))
    assert response.status_code in (413, 400) and time.perf_counter() - start < 2
    assert model.prompts == []


def test_invalid_keys_are_rate_limited(settings: Settings, model, embedder) -> None:
    keyed = settings.replace(single_user=False, rate_limit_per_minute=5)
    with TestClient(create_app(keyed, model=model, embedder=embedder)) as client:
        bad = {"Authorization": "Bearer bz-" + "x" * 43}
        codes = [client.get("/v1/privacy", headers=bad).status_code for _ in range(8)]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}


def test_conversation_ids_are_made_by_the_server_and_private(client: TestClient) -> None:
    chosen = client.post(CHAT, json=_chat("hi", conversation_id="my-own-id"))
    assert chosen.status_code == 404
    mine = client.post(CHAT, json=_chat("hi")).json()["conversation_id"]
    assert len(mine) == 32 and client.post(CHAT, json=_chat("again", conversation_id=mine)).status_code == 200


# -- a storm of dropped streams ---------------------------------------------------------------

@pytest.fixture
def slow_server(settings: Settings, embedder) -> Iterator[tuple[str, SlowModel]]:
    import uvicorn

    model, port = SlowModel(), free_port()
    tuned = settings.replace(max_waiting_chats=32, max_chats_per_user=32)
    srv = uvicorn.Server(uvicorn.Config(create_app(tuned, model=model, embedder=embedder), host="127.0.0.1",
                                        port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_for_http(f"http://127.0.0.1:{port}/healthz", 20)
    yield f"127.0.0.1:{port}", model
    srv.should_exit = True
    thread.join(timeout=10)


def _open_stream(address: str, body: dict, key: str | None = None) -> socket.socket:
    host, port = address.split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    data = json.dumps(body).encode()
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    sock.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def test_dropped_streams_free_the_slot_at_once(slow_server) -> None:
    address, _ = slow_server
    streams = [_open_stream(address, _chat(f"stream {i}", stream=True, max_tokens=1000)) for i in range(20)]
    streams[0].recv(4096)  # the first is generating
    for sock in streams:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # reset: the clients are gone
    start = time.perf_counter()
    connection = http.client.HTTPConnection(address, timeout=30)
    connection.request("POST", CHAT, json.dumps(_chat("hello", max_tokens=5)), {"Content-Type": "application/json"})
    response = connection.getresponse()
    reply = json.loads(response.read())
    seconds = time.perf_counter() - start
    assert response.status == 200 and reply["usage"]["completion_tokens"] == 5
    assert seconds < 5, f"a normal reply took {seconds:.1f} s after 20 dropped streams"
    connection.request("GET", "/readyz")
    assert json.loads(connection.getresponse().read())["ready"] is True


def test_saturated_server_says_so(settings: Settings, embedder) -> None:
    tuned = settings.replace(max_waiting_chats=1)
    with TestClient(create_app(tuned, model=SlowModel(words=40), embedder=embedder)) as client:
        admission = client.app.state.service.admission
        leases = [admission.admit(f"u{i}", client.app.state.service.gates, 0) for i in range(admission.capacity)]
        assert client.get("/readyz").status_code == 503
        refused = client.post(CHAT, json=_chat("hi"))
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        for lease in leases:
            lease.close()
        assert client.get("/readyz").status_code == 200


def test_generation_stops_after_its_time(settings: Settings, embedder) -> None:
    tuned = settings.replace(max_generation_seconds=1)
    with TestClient(create_app(tuned, model=SlowModel(), embedder=embedder)) as client:
        start = time.perf_counter()
        reply = client.post(CHAT, json=_chat("hi", max_tokens=1000)).json()
    assert reply["choices"][0]["finish_reason"] == "length" and time.perf_counter() - start < 4


# -- erasure that holds -----------------------------------------------------------------------

def test_erase_during_chat_resurrects_nothing(slow_server, settings: Settings, rows_mentioning) -> None:
    address, _ = slow_server
    results: dict[str, int] = {}

    def chat(name: str) -> None:
        connection = http.client.HTTPConnection(address, timeout=60)
        body = _chat("My name is Ana and I love green tea.", max_tokens=40, stream=name == "stream")
        connection.request("POST", CHAT, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        results[name] = response.status

    chats = [threading.Thread(target=chat, args=(name,)) for name in ("stream", "plain")]
    for thread in chats:
        thread.start()
    time.sleep(0.3)  # both are in flight: one generating, one queued for the slot
    connection = http.client.HTTPConnection(address, timeout=60)
    connection.request("DELETE", "/v1/me")
    erased = connection.getresponse()
    erased.read()
    for thread in chats:
        thread.join(60)
    assert erased.status == 200 and set(results.values()) <= {200, 409}
    assert rows_mentioning(settings.database_url, "local") == {}


def test_erased_text_is_in_no_database_file(client: TestClient, settings: Settings) -> None:
    secret = "Zanzibar-7f3a9c"
    reply = client.post(CHAT, json=_chat(f"My name is Ana and my password hint is {secret}.")).json()
    client.post("/v1/memories", json={"content": f"Ana's hint is {secret}", "importance": 8})
    client.post("/v1/feedback", json={"message_id": reply["id"], "score": -1, "text": f"Say {secret}"})
    assert client.delete("/v1/me").status_code == 200
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    files = [p for p in database.parent.iterdir() if p.name.startswith(database.name)]
    hits = {p.name: p.read_bytes().count(secret.encode()) for p in files}
    assert files and sum(hits.values()) == 0, hits


def test_erasure_ledger_lists_the_erased_records(client: TestClient, settings: Settings) -> None:
    from bitzero.data.feedback import erased_record_ids

    reply = client.post(CHAT, json=_chat("I like tea.")).json()
    feedback = client.post("/v1/feedback", json={"message_id": reply["id"], "score": 1}).json()
    client.delete("/v1/me")
    assert erased_record_ids(settings.erasure_ledger) == {f"feedback-{feedback['id']}"}
    assert "tea" not in settings.erasure_ledger.read_text()


# -- commit before acknowledging --------------------------------------------------------------

SERVER = """
import sys, numpy as np, uvicorn
from bitzero.service.app import create_app
from bitzero.service.settings import Settings
from tests.service.conftest import FakeModel

class HashEmbedder:
    dimensions = 8
    def encode(self, texts):
        rows = np.array([[hash((t, i)) % 1000 + 1 for i in range(8)] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

settings = Settings(database_url=sys.argv[1], bundles=sys.argv[3], emotion_model=sys.argv[3],
                    embedder=sys.argv[3], feedback_export=sys.argv[3], erasure_ledger=sys.argv[4])
uvicorn.run(create_app(settings, model=FakeModel(), embedder=HashEmbedder()), host="127.0.0.1",
            port=int(sys.argv[2]), log_level="warning")
"""


def _request(address: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(address, timeout=30)
    connection.request(method, path, json.dumps(body) if body is not None else None,
                       {"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    return response.status, json.loads(data) if data else {}


def _stored(url: str, sql: str, *args: object) -> list:
    import sqlite3

    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:  # recovers the WAL, as a restart does
        return connection.execute(sql, args).fetchall()


def test_every_acknowledged_write_survives_a_kill_at_the_acknowledgement(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/kill.db"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    kinds = ["memory", "privacy", "feedback", "forget", "erase"]
    acknowledged, lost = 0, []
    for cycle in range(20):
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVER, url, str(port), str(tmp_path / "none"),
                                   str(tmp_path / "ledger.jsonl")], env=env, cwd=tmp_path)
        address = f"127.0.0.1:{port}"
        try:
            wait_for_http(f"http://{address}/healthz", 60, server)
            kind = kinds[cycle % len(kinds)]
            if kind == "memory":
                status, body = _request(address, "POST", "/v1/memories", {"content": f"fact {cycle}"})
                check = ("SELECT 1 FROM memories WHERE id = ?", body.get("id"), True)
            elif kind == "privacy":
                status, _ = _request(address, "PATCH", "/v1/privacy", {"retention_days": 100 + cycle})
                check = ("SELECT 1 FROM privacy_settings WHERE retention_days = ?", 100 + cycle, True)
            elif kind == "feedback":
                reply = _request(address, "POST", CHAT, _chat(f"hello {cycle}"))[1]
                status, body = _request(address, "POST", "/v1/feedback", {"message_id": reply["id"], "score": 1})
                check = ("SELECT 1 FROM feedback WHERE id = ?", body.get("id"), True)
            elif kind == "forget":
                memory = _request(address, "POST", "/v1/memories", {"content": f"to forget {cycle}"})[1]
                status, _ = _request(address, "DELETE", f"/v1/memories/{memory['id']}")
                check = ("SELECT 1 FROM memories WHERE id = ?", memory["id"], False)
            else:
                _request(address, "POST", "/v1/memories", {"content": f"before erasure {cycle}"})
                status, _ = _request(address, "DELETE", "/v1/me")
                check = ("SELECT 1 FROM users WHERE id = ?", "local", False)
        finally:
            os.kill(server.pid, signal.SIGKILL)  # at the moment the 2xx arrived
            server.wait()
        assert 200 <= status < 300, (kind, status)
        acknowledged += 1
        if bool(_stored(url, check[0], check[1])) != check[2]:
            lost.append((cycle, kind))
    assert acknowledged >= 20 and lost == []
