"""The local stack (deploy/compose.yaml) says what the cluster says: the same images, the service's
settings as its ConfigMap has them, the bundle fetched from MLflow by the same command as the init
container, ports published on loopback only, and podman-compose reads it.
Each container of the stack is run for real by test_stack.py, wired by host networking to a host
PostgreSQL in place of the postgres image. Still not run here: `up` itself, the postgres image (it needs a
registry), compose's service-name DNS on a bridge network (podman here has host networking only), and the
`depends_on` conditions, which Debian's podman-compose 1.0.3 ignores (deploy/README.md, "Without Kubernetes")."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.deploy.manifests import REPO, Doc, find

COMPOSE = REPO / "deploy" / "compose.yaml"


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _pod(rendered: dict[str, list[Doc]], name: str) -> dict:
    return find(rendered["dev"], "Deployment", name)["spec"]["template"]["spec"]


def test_images_are_the_clusters(services: dict[str, dict], rendered: dict[str, list[Doc]]) -> None:
    base = {c["name"]: c["image"] for doc in rendered["dev"] if doc["kind"] == "StatefulSet"
            for c in doc["spec"]["template"]["spec"]["containers"]}
    serve = _pod(rendered, "bitzero-serve")
    for service, container in (("serve", serve["containers"][0]), ("fetch-bundle", serve["initContainers"][0])):
        assert services[service]["image"] == "${REGISTRY:-ghcr.io/bitzero-ai}/" + container["image"].rsplit("/", 1)[1]
    assert services["postgres"]["image"] == f"${{POSTGRES_IMAGE:-{base['postgres']}}}"


def test_service_settings_match_the_configmap(services: dict[str, dict], rendered: dict[str, list[Doc]]) -> None:
    configured = find(rendered["dev"], "ConfigMap", "bitzero-serve")["data"]
    env = services["serve"]["environment"]
    for name in ("BITZERO_HOST", "BITZERO_PORT", "BITZERO_SINGLE_USER", "BITZERO_BUNDLE"):
        assert env[name] == configured[name], name
    assert env["BITZERO_DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:5432/" in env["BITZERO_DATABASE_URL"]
    init = _pod(rendered, "bitzero-serve")["initContainers"][0]
    assert services["fetch-bundle"]["command"][:2] == init["command"]
    assert services["fetch-bundle"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "models:/bitzero@champion" in services["fetch-bundle"]["command"][3], "the dev cluster's default"


def test_hardened_and_on_loopback(services: dict[str, dict]) -> None:
    for name in ("serve", "mlflow", "fetch-bundle"):
        service = services[name]
        assert service["read_only"] and service["cap_drop"] == ["ALL"] and "/tmp" in service["tmpfs"], name
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for port in published)
    assert (COMPOSE.parent / services["postgres"]["volumes"][1].split(":")[0]).is_file()


def test_podman_compose_reads_it() -> None:
    if shutil.which("podman-compose") is None:
        pytest.skip("podman-compose is not installed (.ci/run installs it from Debian)")
    done = subprocess.run(["podman-compose", "--dry-run", "-f", str(COMPOSE), "up", "--detach"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [line for line in done.stdout.splitlines() if line.startswith("podman run ")]
    assert len(runs) == 4 and "--read-only" in runs[-1] and "-p 127.0.0.1:8000:8000" in runs[-1]
