"""Fair use of one server (second review, findings 3, 4 and 5): a plain chat whose client left
stops generating, one user cannot take every admission place, and nobody's invalid keys refuse
anyone's valid key (nor dodge the limit with a made-up X-Forwarded-For)."""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence

from fastapi.testclient import TestClient

from bitzero.service.app import create_app
from bitzero.service.auth import create_key
from bitzero.service.db import transaction
from bitzero.service.settings import Settings
from tests.service.conftest import Chunk, serving
from tests.service.test_hardening import CHAT, SlowModel, _chat, _open_stream

BAD_KEY = {"Authorization": "Bearer bz-" + "x" * 43}


class CountingModel(SlowModel):
    """SlowModel (a word every 20 ms) that counts the words it has produced."""

    def __init__(self) -> None:
        super().__init__()
        self.produced = 0

    def stream(self, prompt_ids: Sequence[int], *, max_tokens: int, **options: object) -> Iterator[Chunk]:
        for chunk in super().stream(prompt_ids, max_tokens=max_tokens, **options):
            self.produced += 1
            yield chunk


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def test_a_plain_chat_stops_when_its_client_leaves(settings: Settings, embedder) -> None:
    model = CountingModel()
    with serving(create_app(settings, model=model, embedder=embedder)) as base:
        address = base.removeprefix("http://")
        sock = _open_stream(address, _chat("tell me a long story", max_tokens=1000))  # not streamed
        deadline = time.monotonic() + 10
        while model.produced < 5:
            assert time.monotonic() < deadline, "generation did not start"
            time.sleep(0.02)
        _reset(sock)
        connection = http.client.HTTPConnection(address, timeout=5)  # main: the slot stays taken ~20 s
        connection.request("POST", CHAT, json.dumps(_chat("hello", max_tokens=5)), {"Content-Type": "application/json"})
        assert connection.getresponse().status == 200
    assert model.produced < 1000 // 4  # the abandoned reply was cut, not generated to its end
    database = settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as db:
        replies = db.execute("SELECT content FROM messages WHERE role = 'assistant'").fetchall()
    assert len(replies) == 1  # only the reply someone received is stored


def _keyed(settings: Settings, **changes: object) -> Settings:
    return settings.replace(single_user=False, **changes)


def _new_key(client_app) -> str:
    with transaction(client_app.state.service.sessions) as session:
        return create_key(session)[0]


def _status_line(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        data += sock.recv(1024)
    return int(data.split(b" ", 2)[1])


def test_one_user_cannot_take_every_place(settings: Settings, embedder) -> None:
    app = create_app(_keyed(settings, max_waiting_chats=8, max_chats_per_user=2), model=SlowModel(), embedder=embedder)
    with serving(app) as base:
        address = base.removeprefix("http://")
        greedy, other = _new_key(app), _new_key(app)
        opened = [_open_stream(address, _chat("hi", stream=True, max_tokens=1000), key=greedy) for _ in range(10)]
        statuses = [_status_line(sock) for sock in opened]
        connection = http.client.HTTPConnection(address, timeout=10)
        connection.request("POST", CHAT, json.dumps(_chat("hi", stream=True, max_tokens=3)),
                           {"Content-Type": "application/json", "Authorization": f"Bearer {other}"})
        others = connection.getresponse().status
        for sock in opened:
            _reset(sock)
    assert statuses.count(200) == 2 and statuses.count(429) == 8
    assert others == 200


def test_invalid_keys_do_not_lock_out_valid_ones(settings: Settings, model, embedder) -> None:
    app = create_app(_keyed(settings, rate_limit_per_minute=5), model=model, embedder=embedder)
    with TestClient(app) as client:
        valid = {"Authorization": f"Bearer {_new_key(app)}"}
        codes = [client.get("/v1/privacy", headers=BAD_KEY).status_code for _ in range(8)]
        assert codes == [401] * 5 + [429] * 3
        assert client.get("/v1/privacy", headers=valid).status_code == 200  # same address, a valid key


def _bad_keys_from_rotating_addresses(base: str, count: int) -> list[int]:
    codes = []
    for index in range(count):
        connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
        connection.request("GET", "/v1/privacy", headers={**BAD_KEY, "X-Forwarded-For": f"203.0.113.{index}"})
        response = connection.getresponse()
        response.read()
        codes.append(response.status)
    return codes


def test_forwarded_for_is_believed_only_from_a_configured_proxy(settings: Settings, model, embedder) -> None:
    with serving(create_app(_keyed(settings, rate_limit_per_minute=5), model=model, embedder=embedder)) as base:
        assert 429 in _bad_keys_from_rotating_addresses(base, 8)  # the peer (loopback) is what counts
    behind_proxy = _keyed(settings, rate_limit_per_minute=5, trusted_proxies="127.0.0.1")
    with serving(create_app(behind_proxy, model=model, embedder=embedder)) as base:
        assert _bad_keys_from_rotating_addresses(base, 8) == [401] * 8  # each forwarded client its own bucket
