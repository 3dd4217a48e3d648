"""The local stack (deploy/compose.yaml) run for real, container by container, wired as compose wires
them as far as this machine allows. Podman here has host networking only and no registry (docs/references.md
§9.1), so two things stand in: each `service:port` becomes 127.0.0.1 and a free port, and a throwaway
PostgreSQL on the host (tests/postgres.py) replaces the postgres image, its databases made as that image
makes them (POSTGRES_DB, compose/postgres-init.sql). Everything else is read from the file: the commands,
environment, named volumes, healthcheck and hardening, on the images built from this repository.
Checked: MLflow healthy with its runs in PostgreSQL, a champion registered by the export stage's own
promote(), fetch-bundle filling the `models` volume with it, and the service serving that bundle on PostgreSQL.
Not run: the postgres image, service-name DNS on a bridge network, `depends_on` conditions (the order is
this test's), and podman-compose `up` itself (test_compose.py runs its --dry-run)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
import pytest
import yaml

from tests.deploy.manifests import REPO
from tests.deploy.podman import LIMITS, MLFLOW_IMAGE, SERVE_IMAGE, Figures, inspect, podman
from tests.export.conftest import (  # noqa: F401 - the small real bundles the export stage would promote
    bundle,
    held_out,
    student,
    teacher,
    teacher_bundle,
    tokenizer_file,
)
from tests.net import free_port, wait_for_http
from tests.postgres import execute, postgres_server  # noqa: F401 - the host's PostgreSQL, in place of the image

pytestmark = pytest.mark.timeout(900)
COMPOSE = REPO / "deploy" / "compose.yaml"
EXPORT_PARAMS = REPO / "conf" / "base" / "parameters_export.yml"
IMAGES = {"mlflow": MLFLOW_IMAGE, "fetch-bundle": MLFLOW_IMAGE, "serve": SERVE_IMAGE}
READY_TIMEOUT_S = 180
VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
# The export stage's promote(), on the two bundles, against the tracking server in MLFLOW_TRACKING_URI.
PROMOTE = """
import json, sys
from pathlib import Path
from pipelines.export.nodes import promote
bundles, params = Path(sys.argv[1]), json.loads(sys.argv[2])
manifests = {kind: json.loads((bundles / kind / "bitzero.json").read_text()) for kind in ("student", "teacher")}
manifests["teacher"]["source"].setdefault("mlflow_run_id", None)  # the teacher fixture had no training run
print(json.dumps(promote(manifests["student"], manifests["teacher"], {**params, "bundles_dir": str(bundles)})))
"""


def interpolate(value: str) -> str:
    """Compose's variables at their defaults (`${NAME:-default}`; `$$` is a literal `$`): the test
    runs the file as a user who set nothing runs it."""
    return VARIABLE.sub(lambda match: match.group(2) or "", value).replace("$$", "$")


@dataclass
class HostNetwork:
    """Where each compose `service:port` is reached with host networking: 127.0.0.1 and a port of its own."""

    ports: dict[str, int]  # "mlflow:5000" -> the free port it listens on here

    def url(self, service: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port(service)}{path}"

    def port(self, service: str) -> int:
        return next(port for address, port in self.ports.items() if address.startswith(f"{service}:"))

    def wire(self, value: str) -> str:
        """``value`` from the file, interpolated, with every service address and container port moved."""
        value = interpolate(value)
        for address, port in self.ports.items():
            value = re.sub(rf"\b{re.escape(address)}\b", f"127.0.0.1:{port}", value)
            value = re.sub(rf"\b{address.split(':')[1]}\b", str(port), value)
        return value


def run_args(service: str, spec: dict[str, Any], project: str, network: HostNetwork) -> list[str]:
    """`podman run` arguments for a compose service, translated as podman-compose translates them,
    but on the host's network (no `ports`, no DNS) with this machine's LIMITS."""
    args = ["--detach", "--name", f"{project}-{service}", *LIMITS]
    args += ["--read-only"] if spec.get("read_only") else []
    args += [f"--cap-drop={cap}" for cap in spec.get("cap_drop", [])]
    args += [f"--security-opt={option}" for option in spec.get("security_opt", [])]
    args += [f"--tmpfs={path}" for path in spec.get("tmpfs", [])]
    args += [arg for name, value in spec.get("environment", {}).items()
             for arg in ("--env", f"{name}={network.wire(str(value))}")]
    args += [arg for volume in spec.get("volumes", []) for arg in ("--volume", f"{project}_{volume}")]
    if "healthcheck" in spec:
        kind, test = spec["healthcheck"]["test"]
        assert kind == "CMD-SHELL", kind
        args += ["--health-cmd", network.wire(test), "--health-interval", spec["healthcheck"]["interval"],
                 "--health-retries", str(spec["healthcheck"]["retries"])]
    args += ["--restart", spec["restart"]] if "restart" in spec else []
    args += ["--stop-timeout", spec["stop_grace_period"].rstrip("s")] if "stop_grace_period" in spec else []
    command = spec.get("command", [])
    argv = shlex.split(network.wire(command)) if isinstance(command, str) else [network.wire(c) for c in command]
    return [*args, IMAGES[service], *argv]


@dataclass
class Stack:
    project: str
    network: HostNetwork
    postgres: str  # the host server's base URL
    champion: dict[str, str]  # the registry's champion version: version and the export stage's tags
    key: str
    up_s: dict[str, float] = field(default_factory=dict)

    def container(self, service: str) -> str:
        return f"{self.project}-{service}"

    def database(self, name: str) -> psycopg.Connection:
        """One of the host server's databases: MLflow's `mlflow`, the service's `bitzero`."""
        return psycopg.connect(f"{self.postgres.replace('+psycopg', '')}/{name}")


def _up(stack: Stack, services: dict[str, dict], service: str, ready: str | None) -> None:
    """Start ``service`` and wait until it is ready (``ready``: a URL answering 200), or, without one,
    until it has exited 0 (a one-shot job); records the seconds from `podman run`."""
    name = stack.container(service)
    start = time.monotonic()
    podman("run", *run_args(service, services[service], stack.project, stack.network))
    try:
        if ready is not None:
            wait_for_http(ready, READY_TIMEOUT_S)
        else:
            podman("wait", "--condition", "exited", name, timeout=READY_TIMEOUT_S)
            assert inspect(name)["State"]["ExitCode"] == 0, "exited with an error"
    except (TimeoutError, AssertionError, subprocess.TimeoutExpired) as error:
        logs = podman("logs", name, check=False)
        raise AssertionError(f"{service}: {error}\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}") from None
    stack.up_s[service] = time.monotonic() - start


def _postgres_as_the_image_makes_it(server: str, services: dict[str, dict]) -> None:
    """The databases the postgres image would make on its first start: POSTGRES_DB, then the init
    scripts the file mounts into /docker-entrypoint-initdb.d (the user is the server's own, `bitzero`)."""
    env = {name: interpolate(str(value)) for name, value in services["postgres"]["environment"].items()}
    assert server.split("://", 1)[1].startswith(f"{env['POSTGRES_USER']}@"), "the file's user is the server's"
    execute(server, f"CREATE DATABASE {env['POSTGRES_DB']}")
    for volume in services["postgres"]["volumes"]:
        source, target = volume.split(":")[:2]
        if target.startswith("/docker-entrypoint-initdb.d/"):
            execute(server, (COMPOSE.parent / source).read_text())


def _register_champion(bundles: dict[str, Path], root: Path, tracking_uri: str) -> dict[str, str]:
    """Both bundles registered and the champion chosen by the export stage's promote(), in a child
    process (MLflow's client state stays out of this one); the champion's kind, version and model name."""
    folder = root / "bundles"
    for kind, source in bundles.items():
        shutil.copytree(source, folder / kind)
    export = yaml.safe_load(EXPORT_PARAMS.read_text())["export"]
    params = {name: export[name] for name in ("registered_model_name", "gate_factor")}
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, "-c", PROMOTE, str(folder), json.dumps(params)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    promotion = json.loads(done.stdout.strip().splitlines()[-1])
    champion = promotion["registered"][promotion["champion"]]
    return {"kind": promotion["champion"], "version": str(champion["version"]),
            "model": champion["registered_model"]}


@pytest.fixture(scope="module")
def stack(mlflow_image: str, serve_image: str, postgres_server: str, bundle: Path,  # noqa: F811 - the fixtures, imported above
          teacher_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:  # noqa: F811 - the fixtures, imported above
    """The stack up in compose's order: MLflow, a model registered, fetch-bundle, serve; removed after."""
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    pg_port = int(postgres_server.rsplit(":", 1)[1])
    network = HostNetwork({"postgres:5432": pg_port, "mlflow:5000": free_port(), "serve:8000": free_port()})
    project = f"bitzero-test-{uuid.uuid4().hex[:8]}"
    stack = Stack(project, network, postgres_server, {}, "")
    try:
        _postgres_as_the_image_makes_it(postgres_server, services)
        _up(stack, services, "mlflow", network.url("mlflow", "/health"))
        stack.champion = _register_champion({"student": bundle, "teacher": teacher_bundle},
                                            tmp_path_factory.mktemp("stack"), network.url("mlflow"))
        _up(stack, services, "fetch-bundle", None)
        _up(stack, services, "serve", network.url("serve", "/readyz"))
        created = podman("exec", stack.container("serve"), "bitzero", "keys", "create", "--label", "stack").stdout
        stack.key = json.loads(created)["key"]
        yield stack
    finally:
        for service in ("serve", "fetch-bundle", "mlflow"):
            podman("rm", "--force", "--time", "5", stack.container(service), check=False)
        for volume in compose["volumes"]:
            podman("volume", "rm", "--force", f"{project}_{volume}", check=False)


def test_mlflow_keeps_runs_in_postgres_and_artifacts_in_its_volume(stack: Stack) -> None:
    mlflow = stack.container("mlflow")
    assert podman("healthcheck", "run", mlflow, check=False).returncode == 0, "compose's healthcheck"
    with stack.database("mlflow") as connection:
        versions = connection.execute("SELECT version FROM model_versions WHERE name = %s ORDER BY version",
                                      (stack.champion["model"],)).fetchall()
    assert [v for (v,) in versions] == [1, 2], "both bundles registered in the backend store"
    stored = podman("exec", mlflow, "find", "/var/lib/mlflow/artifacts", "-name", "bitzero.json").stdout.split()
    assert len(stored) == 2, stored
    assert any(m["Name"] == f"{stack.project}_mlflow-artifacts" for m in inspect(mlflow)["Mounts"])


def test_fetch_bundle_fills_the_models_volume_with_the_champion(stack: Stack) -> None:
    logs = podman("logs", stack.container("fetch-bundle"))
    assert "fetched models:/bitzero@champion into /models/bundle" in logs.stdout + logs.stderr
    listed = podman("exec", stack.container("serve"), "ls", "/models/bundle").stdout.split()
    assert {"bitzero.json", "tokenizer.json"} <= set(listed), listed


def test_serve_answers_with_the_registered_champion(stack: Stack) -> None:
    """The service keeps its keys in the host's PostgreSQL, serves exactly the champion version's bundle
    (its content id, as the export stage tagged the version), and answers the openai client with a key only."""
    url = stack.network.url("serve")
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert httpx.get(f"{url}/v1/memories").status_code == 401, "BITZERO_SINGLE_USER=false"
    with stack.database("bitzero") as connection:
        assert connection.execute("SELECT count(*) FROM api_keys").fetchone() == (1,), "its key is in PostgreSQL"
    with stack.database("mlflow") as connection:
        tags = dict(connection.execute("SELECT key, value FROM model_version_tags WHERE name = %s AND version = %s",
                                       (stack.champion["model"], int(stack.champion["version"]))).fetchall())
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=stack.key, timeout=120, max_retries=0)
    [card] = client.models.list().data
    assert card.model_extra is not None and card.model_extra["bundle_id"] == tags["bitzero_model_id"]
    assert card.model_extra["kind"] == tags["kind"] == stack.champion["kind"] and card.model_extra["champion"]
    reply = client.chat.completions.create(model=card.id, messages=[{"role": "user", "content": "hello there"}],
                                           max_tokens=6)
    assert reply.model == card.id and reply.choices[0].message.role == "assistant"
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_hardened_as_compose_says(stack: Stack) -> None:
    for service in ("mlflow", "fetch-bundle", "serve"):
        state = inspect(stack.container(service))
        assert state["HostConfig"]["ReadonlyRootfs"] is True, service
        assert not state["EffectiveCaps"], (service, state["EffectiveCaps"])
        assert "/tmp" in state["HostConfig"]["Tmpfs"], service
    for service in ("mlflow", "serve"):
        uid = podman("exec", stack.container(service), "id", "-u").stdout.strip()
        assert uid == "10001", (service, uid)
    [models] = [m for m in inspect(stack.container("serve"))["Mounts"] if m["Destination"] == "/models"]
    assert models["Name"] == f"{stack.project}_models" and not models["RW"], "the models volume, read-only"


def test_figures(stack: Stack, figures: Figures) -> None:
    figures("local stack, from `podman run` to healthy", {f"{service} s": round(seconds, 1)
                                                           for service, seconds in stack.up_s.items()})
