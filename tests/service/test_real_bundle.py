"""End to end with a real exported bundle: a tiny random checkpoint -> export -> `bitzero serve`,
as a user runs it; the serving process never imports torch, and memory survives a restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from tests.net import free_port, wait_for_http
from tests.service.conftest import EMBEDDER_CACHE

SERVE_TIMEOUT = 60


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:  # noqa: ANN001 - embedder: cache ready
    torch = pytest.importorskip("torch")
    from bitzero.export.exporter import export_bundle, held_out_inputs
    from bitzero.model import BitZeroLM, ModelConfig, load_checkpoint, save_checkpoint
    from bitzero.text import Tokenizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("real")
    tokenizer_path = Tokenizer.default().save(root / "tokenizer.json")
    tokenizer = Tokenizer.load(tokenizer_path)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_head=4, n_embd=64, block_size=384)
    save_checkpoint(BitZeroLM(config).eval(), root / "student", tokenizer_path)
    model = load_checkpoint(root / "student")
    held_out = held_out_inputs([[{"role": "user", "content": "hello, how are you?"},
                                 {"role": "assistant", "content": "fine, thanks!"}]], tokenizer, 64, 2)
    export_bundle(model, tokenizer_path, root / "bundle", held_out, variants=("nbits",),
                  tolerances={"nbits": 0.1}, greedy_tokens=8)
    return root / "bundle"


def _serve(bundle: Path, database: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "BITZERO_BUNDLE": str(bundle), "BITZERO_EMBEDDER": str(EMBEDDER_CACHE),
           "BITZERO_DATABASE_URL": f"sqlite:///{database}", "BITZERO_PORT": str(port), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "bitzero.cli", "serve"], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", SERVE_TIMEOUT, process)
    except ChildProcessError:
        raise AssertionError(f"bitzero serve exited: {process.stdout.read()}") from None
    except TimeoutError:
        process.kill()
        raise AssertionError("bitzero serve did not become ready") from None
    return process


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output


def test_bitzero_serve_streams_and_remembers_across_restart(bundle: Path, tmp_path: Path) -> None:
    port = free_port()
    database = tmp_path / "companion.db"
    process = _serve(bundle, database, port)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="local", max_retries=0)
        model_id = client.models.list().data[0].id
        assert model_id == json.loads((bundle / "bitzero.json").read_text())["model_id"]
        stream = client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "Hi, my name is Ana."}],
            stream=True, max_tokens=12, temperature=0.8, seed=1)
        chunks = list(stream)
        assert chunks[-1].choices[0].finish_reason in {"stop", "length"}
        assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    finally:
        output = _stop(process)
    assert "http://127.0.0.1" in output
    assert "Hi, my name is Ana" not in output  # message content stays out of the logs
    process = _serve(bundle, database, port)
    try:
        memories = httpx.get(f"http://127.0.0.1:{port}/v1/memories").json()["data"]
        assert httpx.get(f"http://127.0.0.1:{port}/v1/memories/search", params={"q": "secret words"}).status_code == 200
        assert [m["content"] for m in memories] == ["The user's name is Ana."]
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}).json()
        assert reply["usage"]["completion_tokens"] <= 8
    finally:
        output = _stop(process)
    assert "secret words" not in output and "GET /v1/memories/search 200" in output


def test_serving_never_imports_torch(bundle: Path, tmp_path: Path) -> None:
    script = f"""
import sys
from fastapi.testclient import TestClient
from bitzero.service.app import create_app
from bitzero.service.settings import Settings
settings = Settings(bundle={str(bundle)!r}, embedder={str(EMBEDDER_CACHE)!r},
                    database_url="sqlite:///{tmp_path}/c.db", allowed_hosts="testserver")
with TestClient(create_app(settings)) as client:
    reply = client.post("/v1/chat/completions", json={{"messages": [{{"role": "user", "content": "I love tea."}}],
                                                      "max_tokens": 4}})
    assert reply.status_code == 200, reply.text
    assert client.get("/v1/memories").json()["data"][0]["content"] == "The user loves tea."
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {{"torch", "transformers", "sentence_transformers"}})
print("HEAVY", heavy)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout


def test_serve_refuses_a_missing_bundle_clearly(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bitzero.cli", "serve", "--bundle", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "BITZERO_DATABASE_URL": f"sqlite:///{tmp_path}/c.db"})
    assert done.returncode == 2 and "no exported bundle" in done.stderr and "Traceback" not in done.stderr
