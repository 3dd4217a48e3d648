"""Many users at once on a real (tiny) bundle: chats decoded together in batched steps answer what
they answer one at a time, count their tokens right, and a client that leaves frees its row."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bitzero.service.app import create_app
from bitzero.service.model import ModelSet, load_models
from bitzero.service.settings import Settings
from tests.service.conftest import serving
from tests.service.test_hardening import CHAT, _open_stream

MESSAGES = [f"hello number {i}, how are you today?" for i in range(6)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    from bitzero.export.exporter import export_bundle, held_out_inputs
    from tests.export.conftest import tiny_student
    from tests.tiny import tiny_tokenizer

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("batched")
    tokenizer_path = tiny_tokenizer().save(root / "tokenizer.json")
    held_out = held_out_inputs([{"conversation": [{"role": "user", "content": "hello, how are you?"},
                                                  {"role": "assistant", "content": "fine, thanks!"}]}],
                               tiny_tokenizer(), 256, 1, 1)
    export_bundle(tiny_student(block_size=512), tokenizer_path, root / "student", held_out, variants=("nbits",),
                  greedy_tokens=8)
    return root / "student"


def _tuned(settings: Settings) -> Settings:
    # Greedy, no sentence stop: every reply runs to a stop token or max_tokens.
    return settings.replace(temperature=0.0, max_sentences=0, max_chats_per_user=16, max_waiting_chats=16)


def _ask(url: str, text: str, stream: bool = False) -> dict:
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 12, "stream": stream,
            "stream_options": {"include_usage": True}}
    response = httpx.post(f"{url}{CHAT}", json=body, timeout=120)
    response.raise_for_status()
    if not stream:
        reply = response.json()
        return {"content": reply["choices"][0]["message"]["content"], "finish": reply["choices"][0]["finish_reason"],
                "usage": reply["usage"]}
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    return {"content": "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]),
            "finish": next(e["choices"][0]["finish_reason"] for e in events
                           if e["choices"] and e["choices"][0]["finish_reason"]),
            "usage": events[-1]["usage"]}


def _served(bundle: Path, slots: int) -> ModelSet:
    return load_models(bundle, threads=1, slots=slots)


@pytest.mark.parametrize("stream", [False, True])
def test_concurrent_chats_answer_what_sequential_ones_do(bundle: Path, settings: Settings, embedder,
                                                        stream: bool) -> None:
    alone = _served(bundle, 1)
    with serving(create_app(_tuned(settings), models=alone, embedder=embedder)) as url:
        sequential = [_ask(url, text, stream) for text in MESSAGES]
    together = _served(bundle, 4)
    assert together.champion.model.slots == 4
    settings = settings.replace(database_url=settings.database_url.replace("companion.db", "batched.db"))
    with serving(create_app(_tuned(settings), models=together, embedder=embedder)) as url, \
            ThreadPoolExecutor(len(MESSAGES)) as pool:
        concurrent = list(pool.map(lambda text: _ask(url, text, stream), MESSAGES))
    assert concurrent == sequential  # text, finish reason and usage alike
    for reply in concurrent:
        usage = reply["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert usage["completion_tokens"] == 12 if reply["finish"] == "length" else usage["completion_tokens"] < 12
    assert any(reply["finish"] == "length" for reply in concurrent)


def test_clients_that_leave_free_their_rows(bundle: Path, settings: Settings, embedder) -> None:
    models = _served(bundle, 2)
    batcher = models.champion.model._batcher  # type: ignore[attr-defined]
    with serving(create_app(_tuned(settings), models=models, embedder=embedder)) as url:
        address = url.removeprefix("http://")
        body = {"messages": [{"role": "user", "content": "talk to me for a long time"}], "stream": True,
                "max_tokens": 400, "temperature": 1.0}
        streams = [_open_stream(address, body) for _ in range(2)]
        for sock in streams:  # both are generating: past the role event
            seen = b""
            while seen.count(b"data:") < 2:
                seen += sock.recv(4096)
        for sock in streams:  # reset: the clients are gone
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
        with ThreadPoolExecutor(2) as pool:  # both rows answer again: they would wait if the dropped held them
            replies = list(pool.map(lambda text: _ask(url, text), MESSAGES[:2]))
        assert all(r["usage"]["completion_tokens"] >= 1 for r in replies)
        deadline = time.time() + 10
        while any(batcher._rows) and time.time() < deadline:
            time.sleep(0.05)
        assert batcher._rows == [None, None]
