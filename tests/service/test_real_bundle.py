"""End to end with real exported bundles: tiny random checkpoints -> export -> `bitzero serve`, as a
user runs it: every bundle served, the champion by default, the request's model picks the one that
answers; the serving process never imports torch, and memory survives a restart."""

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
def bundles(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:
    """Two tiny random models exported as the export stage does (student nbits, teacher int4), and
    a champion.json that names the teacher (so "champion" cannot be mistaken for "first by name")."""
    torch = pytest.importorskip("torch")
    from bitzero.export.exporter import export_bundle, held_out_inputs
    from bitzero.export.promotion import TEACHER, Decision, write_champion
    from tests.export.conftest import tiny_student, tiny_teacher
    from tests.tiny import tiny_tokenizer

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("real") / "bundles"
    tokenizer_path = tiny_tokenizer().save(root.parent / "tokenizer.json")
    held_out = held_out_inputs([{"conversation": [{"role": "user", "content": "hello, how are you?"},
                                                  {"role": "assistant", "content": "fine, thanks!"}]}],
                               tiny_tokenizer(), 256, 1, 1)
    ids = {}
    for kind, model, variant in (("student", tiny_student(block_size=512), "nbits"),
                                 ("teacher", tiny_teacher(seed=1, block_size=512), "int4")):
        ids[kind] = export_bundle(model, tokenizer_path, root / kind, held_out, variants=(variant,),
                                  greedy_tokens=8)["model_id"]
    write_champion(root, Decision(TEACHER, "chosen by the test", 2.0, 1.0, 1.1), ids)
    return root


def _serve(bundles: Path, database: Path, port: int, setting: str = "BITZERO_BUNDLES") -> subprocess.Popen[str]:
    env = {**os.environ, setting: str(bundles), "BITZERO_EMBEDDER": str(EMBEDDER_CACHE),
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


def _bundle_id(bundle: Path) -> str:
    return json.loads((bundle / "bitzero.json").read_text())["model_id"]


def test_every_bundle_is_served_and_the_request_picks_one(bundles: Path, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    process = _serve(bundles, tmp_path / "companion.db", port)
    try:
        listed = httpx.get(f"{base}/models").json()
        assert [(m["id"], m["champion"], m["bundle_id"]) for m in listed["data"]] == [
            ("bitzero-teacher-int4", True, _bundle_id(bundles / "teacher")),
            ("bitzero-student-nbits", False, _bundle_id(bundles / "student"))]
        assert all(m["object"] == "model" and m["context_length"] == 512 for m in listed["data"])

        def ask(model: str | None) -> dict:
            body = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 6, "temperature": 0}
            return httpx.post(f"{base}/chat/completions", timeout=60, json={**body, "model": model}).json()

        default, student, by_bundle_id = ask(None), ask("bitzero-student-nbits"), ask(_bundle_id(bundles / "student"))
        assert default["model"] == "bitzero-teacher-int4" and student["model"] == "bitzero-student-nbits"
        assert by_bundle_id["model"] == "bitzero-student-nbits"
        text = [r["choices"][0]["message"]["content"] for r in (default, student, by_bundle_id)]
        assert text[0] != text[1] and text[1] == text[2], "a different model answered"
        client = openai.OpenAI(base_url=base, api_key="local", max_retries=0)
        chunks = list(client.chat.completions.create(model="bitzero-student-nbits", stream=True, max_tokens=4,
                                                     messages=[{"role": "user", "content": "hi"}]))
        assert {c.model for c in chunks} == {"bitzero-student-nbits"}
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        error = missing.value.body
        assert error["type"] == "invalid_request_error"
        assert "bitzero-teacher-int4, bitzero-student-nbits" in error["message"]
    finally:
        output = _stop(process)
    assert "champion bitzero-teacher-int4" in output


def test_bitzero_serve_streams_and_remembers_across_restart(bundles: Path, tmp_path: Path) -> None:
    """One bundle folder under the old setting's name: the cluster's init container fetches one."""
    bundle = bundles / "student"
    port = free_port()
    database = tmp_path / "companion.db"
    process = _serve(bundle, database, port, setting="BITZERO_BUNDLE")
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="local", max_retries=0)
        model_id = client.models.list().data[0].id
        assert model_id == "bitzero-student-nbits"
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
    process = _serve(bundle, database, port, setting="BITZERO_BUNDLE")
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


def test_serving_never_imports_torch(bundles: Path, tmp_path: Path) -> None:
    script = f"""
import sys
from fastapi.testclient import TestClient
from bitzero.service.app import create_app
from bitzero.service.settings import Settings
settings = Settings(bundles={str(bundles)!r}, embedder={str(EMBEDDER_CACHE)!r},
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
