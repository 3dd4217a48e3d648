"""Service fixtures: a deterministic fake model (the ChatModel protocol) on the tiny tokenizer with
SmolLM2's chat template, the real MiniLM embedder (converted to ONNX once and cached), and an app
on a throwaway SQLite file."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bitzero.companion.embeddings import OnnxEmbedder, ensure_embedder
from bitzero.service.app import create_app
from bitzero.service.server import uvicorn_server
from bitzero.service.settings import Settings
from bitzero.service.state import service_state
from bitzero.serving.sampling import GREEDY, UNSTEERED, Sampling, Steering
from tests.net import free_port
from tests.postgres import postgres_server, postgres_url  # noqa: F401 - shared with tests/deploy
from tests.tiny import tiny_tokenizer

EMBEDDER_CACHE = Path(tempfile.gettempdir()) / "bitzero-test-embedder-minilm-v1"
TOKENIZER = tiny_tokenizer()  # trained once (a second), shared by every fake model


@dataclass(frozen=True)
class Chunk:
    text: str
    token_ids: tuple[int, ...]
    finish_reason: str | None


class FakeModel:
    """Replies "You said: <last user text>" word by word; records each prompt it was given (as the
    ChatML text the template made) and the max_tokens it was asked for."""

    provider = "fake"
    slots = 1

    def __init__(self, context_length: int = 2048, model_id: str = "bitzero-fake") -> None:
        self.context_length, self.model_id = context_length, model_id
        self.tokenizer = TOKENIZER
        self.prompts: list[str] = []
        self.max_tokens: list[int] = []
        self.earlier: list[str] = []  # the earlier replies each call was told not to repeat
        self.barred: list[list[str]] = []  # the phrases each call was told not to say
        self.recalled: list[set[str]] = []  # the recalled words' first tokens each call was given
        self.opening: list[set[str]] = []  # the tokens each call's reply was nudged to open with

    def answer(self, last_user: str) -> str:
        return f"You said: {last_user}"

    def stream(self, prompt_ids: Sequence[int], *, max_tokens: int, sampling: Sampling = GREEDY,
               steering: Steering = UNSTEERED) -> Iterator[Chunk]:
        assert len(prompt_ids) + max_tokens <= self.context_length
        self.earlier.append(self.tokenizer.decode(list(steering.earlier)))
        self.barred.append([self.tokenizer.decode(list(b)) for b in steering.barred])
        self.recalled.append({self.tokenizer.decode([t]) for t in steering.recalled})
        self.opening.append({self.tokenizer.decode([t]) for t in steering.opening})
        prompt = self.tokenizer.decode(prompt_ids)
        assert prompt.endswith("<|im_start|>assistant\n"), prompt[-80:]
        self.prompts.append(prompt)
        self.max_tokens.append(max_tokens)
        last_user = prompt.rsplit("<|im_start|>user\n", 1)[-1].split("<|im_end|>", 1)[0]
        reply = self.answer(last_user)
        for stop_text in sampling.stop:
            if stop_text in reply:
                reply = reply[: reply.index(stop_text)]
        ids = self.tokenizer.encode(reply)
        words, used = reply.split(" "), 0
        for index, word in enumerate(words):
            piece = word if index == 0 else " " + word
            piece_ids = self.tokenizer.encode(piece)
            if used + len(piece_ids) > max_tokens:
                yield Chunk("", (), "length")
                return
            used += len(piece_ids)
            yield Chunk(piece, tuple(piece_ids), None)
        assert used == len(ids)
        yield Chunk("", (), "stop")


@pytest.fixture(scope="session")
def embedder() -> OnnxEmbedder:
    return ensure_embedder(EMBEDDER_CACHE)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Every path in tmp_path: nothing read from the working tree's pipeline outputs (an emotion
    classifier there would change replies); TestClient's Host "testserver" allowed."""
    return Settings(database_url=f"sqlite:///{tmp_path}/companion.db", bundles=tmp_path / "no-bundle",
                    embedder=EMBEDDER_CACHE, feedback_export=tmp_path / "feedback.jsonl",
                    emotion_model=tmp_path / "no-emotion.json", erasure_ledger=tmp_path / "erasures.jsonl",
                    allowed_hosts="testserver")


@pytest.fixture
def model() -> FakeModel:
    return FakeModel()


@pytest.fixture
def client(settings: Settings, model: FakeModel, embedder: OnnxEmbedder) -> Iterator[TestClient]:
    app = create_app(settings, model=model, embedder=embedder)
    with TestClient(app) as test_client:
        yield test_client


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` on a real uvicorn server (as `bitzero serve` runs it) on a free loopback port."""
    port = free_port()
    srv = uvicorn_server(app, service_state(app).settings, port=port, log_level="warning")
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def server(settings, model, embedder) -> Iterator[str]:
    with serving(create_app(settings, model=model, embedder=embedder)) as url:
        yield url


def _rows_mentioning(url: str, user: str) -> dict[str, int]:
    """Every row, in every table, holding the user id in any column; each table must have user_id."""
    from sqlalchemy import inspect, text

    from bitzero.service.db import make_engine

    engine = make_engine(url)
    found = {}
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            if table == "alembic_version":
                continue
            columns = [c["name"] for c in inspect(connection).get_columns(table)]
            # users and rate_buckets are keyed by the user id itself (a bucket's key: a user id or an address).
            assert table in ("users", "rate_buckets") or "user_id" in columns, \
                f"{table} has no user_id: erasure could not reach it"
            rows = connection.execute(text(f"SELECT * FROM {table}")).all()
            hits = sum(1 for row in rows for value in row if value == user)
            if hits:
                found[table] = hits
    engine.dispose()
    return found


@pytest.fixture
def rows_mentioning():
    return _rows_mentioning
