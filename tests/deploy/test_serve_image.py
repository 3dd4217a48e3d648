"""The serving image, built from this repository and run as a user runs it: an exported bundle mounted
read-only, a volume for its database, a read-only root filesystem. Checked against the running
container: readiness, the openai client (chat and streaming), a memory written and read back, no torch,
a non-root process, the image's own HEALTHCHECK, and a clean stop that loses nothing."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.deploy.podman import LIMITS, Figures, image_size_mb, inspect, podman
from tests.export.conftest import bundle, held_out, student, tokenizer_file  # noqa: F401 - a small real bundle
from tests.net import free_port, wait_for_http

pytestmark = pytest.mark.timeout(1800)
READY_TIMEOUT_S = 180
STOP_GRACE_S = 20


@dataclass
class Running:
    name: str
    url: str
    key: str
    cold_start_s: float


def _start(image: str, name: str, port: int, models: Path, volume: str) -> float:
    """Start the container detached and wait for /readyz; the seconds from `podman run` to ready."""
    start = time.monotonic()
    podman("run", "--detach", "--name", name, *LIMITS, "--read-only", "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges",
           # The image binds 0.0.0.0 (BITZERO_HOST in its env); with host networking, this test picks the port.
           "--env", f"BITZERO_PORT={port}", "--env", "BITZERO_THREADS=1",
           "--volume", f"{models}:/models/bundle:ro", "--volume", f"{volume}:/var/lib/bitzero", image)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", READY_TIMEOUT_S)
    except TimeoutError:
        raise AssertionError(f"not ready in {READY_TIMEOUT_S} s:\n{podman('logs', name).stderr[-4000:]}") from None
    return time.monotonic() - start


@pytest.fixture(scope="module")
def models(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811 - the fixture, imported above
    """The exported bundle, readable by the container's user (pytest's folders are private to root)."""
    folder = tmp_path_factory.mktemp("models", numbered=True) / "bundle"
    shutil.copytree(bundle, folder)
    for path in [folder.parent, folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


@pytest.fixture(scope="module")
def running(serve_image: str, models: Path) -> Iterator[Running]:
    name = f"bitzero-serve-test-{uuid.uuid4().hex[:8]}"
    volume = f"{name}-data"
    podman("volume", "create", volume)
    port = free_port()
    try:
        cold_start = _start(serve_image, name, port, models, volume)
        created = podman("exec", name, "bitzero", "keys", "create", "--label", "test").stdout
        key = json.loads(created)["key"]
        yield Running(name, f"http://127.0.0.1:{port}", key, cold_start)
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)
        podman("volume", "rm", "--force", volume, check=False)


def _client(running: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{running.url}/v1", api_key=running.key, timeout=120, max_retries=0)


def test_ready_and_keys_required_off_loopback(running: Running) -> None:
    assert httpx.get(f"{running.url}/readyz").status_code == 200
    assert httpx.get(f"{running.url}/v1/memories").status_code == 401, "BITZERO_SINGLE_USER=false in the image"


def test_openai_client_chats_and_streams(running: Running) -> None:
    client = _client(running)
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello there"}],
                                           max_tokens=6)
    assert reply.choices[0].message.role == "assistant" and reply.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=6, stream=True))
    assert chunks and chunks[-1].choices[0].finish_reason in {"stop", "length"}


def _memories(running: Running) -> list[str]:
    response = httpx.get(f"{running.url}/v1/memories", headers={"Authorization": f"Bearer {running.key}"})
    assert response.status_code == 200, response.text
    return [m["content"] for m in response.json()["data"]]


def test_memory_written_and_read_back(running: Running) -> None:
    response = httpx.post(f"{running.url}/v1/memories", json={"content": "The user loves green tea."},
                          headers={"Authorization": f"Bearer {running.key}"})
    assert response.status_code == 201, response.text
    assert "The user loves green tea." in _memories(running)


def test_no_torch_non_root_read_only(running: Running) -> None:
    probe = podman("exec", running.name, "python", "-c",
                   "import importlib.util, os; print(importlib.util.find_spec('torch') is None, os.getuid())").stdout
    assert probe.split() == ["True", "10001"], probe
    assert inspect(running.name)["HostConfig"]["ReadonlyRootfs"] is True
    written = podman("exec", running.name, "touch", "/opt/venv/x", check=False)
    assert written.returncode != 0 and "Read-only file system" in written.stderr


def test_image_healthcheck_passes(running: Running, serve_image: str) -> None:
    image = json.loads(podman("image", "inspect", serve_image).stdout)[0]
    assert image["Healthcheck"]["Test"][-1] == "/usr/local/bin/bitzero-healthcheck", "docker format keeps it"
    assert podman("healthcheck", "run", running.name, check=False).returncode == 0


def test_stops_cleanly_and_keeps_its_data(running: Running, serve_image: str, figures: Figures) -> None:
    """SIGTERM ends uvicorn within the grace period (exit 0, not a SIGKILL's 137); on restart the
    database volume still holds the key and the memory written before."""
    remembered = "The user's cat is called Miso."
    assert httpx.post(f"{running.url}/v1/memories", json={"content": remembered},
                      headers={"Authorization": f"Bearer {running.key}"}).status_code == 201
    start = time.monotonic()
    podman("stop", "--time", str(STOP_GRACE_S), running.name)
    stopped_in = time.monotonic() - start
    state = inspect(running.name)["State"]
    assert stopped_in < STOP_GRACE_S and state["ExitCode"] == 0, (stopped_in, state)
    podman("start", running.name)
    wait_for_http(f"{running.url}/readyz", READY_TIMEOUT_S)
    assert remembered in _memories(running)
    figures("serve image", {"size MB": round(image_size_mb(serve_image)),
                                   "cold start to ready s": round(running.cold_start_s, 1),
                                   "stop s": round(stopped_in, 1)})
