"""The export stage against a tracking server started the way the cluster starts it
(`mlflow server --serve-artifacts --artifacts-destination ...`), with the artifact location the
platform ConfigMap gives the training pods: the bundle travels through the server into its
artifact store, not onto the training pod's own disk, and the service's init container fetches
it from there into an empty folder elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bitzero.serving.champion import champion_bundle
from tests.deploy.manifests import REPO, Doc, find
from tests.net import free_port, wait_for_http
from tests.pipelines.conftest import BIN, kedro_run, project  # noqa: F401 - the throwaway project fixture
from tests.pipelines.test_export import _inputs

pytestmark = pytest.mark.timeout(600)


def test_bundle_goes_through_the_server_and_back(project: Path, rendered: dict[str, list[Doc]], tmp_path: Path) -> None:  # noqa: F811 - the fixture, imported above
    platform = find(rendered["dev"], "ConfigMap", "bitzero-platform")["data"]
    assert platform["MLFLOW_ARTIFACT_LOCATION"].startswith("mlflow-artifacts:/"), "artifacts must go through the server"
    port = free_port()
    store = tmp_path / "object-store"
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--serve-artifacts", "--artifacts-destination", str(store), "--host", "127.0.0.1", "--port", str(port),
         "--allowed-hosts", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # an unread pipe could fill and stall it
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout_s=120, process=server)
        client_env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
                      "MLFLOW_ARTIFACT_LOCATION": platform["MLFLOW_ARTIFACT_LOCATION"]}
        _inputs(project)
        done = kedro_run(project, "--pipelines", "export", "--env", "test", env=client_env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert list(store.rglob("bitzero.json")), "the bundle reached the server's artifact store"
        assert not (project / "mlflow" / "artifacts").exists(), "nothing left on the training pod's disk"

        dest = tmp_path / "serve" / "bundle"
        fetch = subprocess.run(
            [sys.executable, str(REPO / "deploy" / "docker" / "fetch_bundle.py"), "--model-uri", "models:/bitzero@champion",
             "--dest", str(dest)],
            cwd=tmp_path, env={**client_env, "PATH": str(BIN)}, capture_output=True, text=True, timeout=300,
        )
        assert fetch.returncode == 0, fetch.stderr[-3000:]
        bundle = champion_bundle(project / "data" / "06_models" / "bundles")  # the gate's choice
        assert sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file()) == sorted(
            p.relative_to(bundle) for p in bundle.rglob("*") if p.is_file())
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
