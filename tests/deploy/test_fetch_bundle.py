"""The service's init container: a bundle registered the way the export stage registers it
(bitzero.export.registry) is fetched whole into the service's folder; anything else stops the pod
with a clear message and leaves the folder as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.manifests import REPO

FETCH = REPO / "deploy" / "docker" / "fetch_bundle.py"
REGISTER = """
import sys
from bitzero.export.registry import register_bundle
for folder, name in zip(sys.argv[1::2], sys.argv[2::2]):
    print(register_bundle(folder, name, {"source": "test"})["model_uri"])
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A local MLflow registry holding a bundle (version 1 of "bitzero") and a folder that is not one."""
    root = tmp_path_factory.mktemp("registry")
    bundle = root / "bundle"
    (bundle / "nbits").mkdir(parents=True)
    (bundle / "bitzero.json").write_text(json.dumps({"format": "bitzero-bundle", "version": 1}))
    (bundle / "tokenizer.json").write_text('{"version": 1}')
    (bundle / "nbits" / "model.onnx").write_bytes(os.urandom(2048))
    stray = root / "stray"
    stray.mkdir()
    (stray / "weights.bin").write_bytes(b"\0" * 64)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db", "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, "-c", REGISTER, str(bundle), "bitzero", str(stray), "other"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    uris = done.stdout.split()
    assert uris == ["models:/bitzero/1", "models:/other/1"]
    return {"root": root, "bundle": bundle, "env": env}


def _fetch(registry: dict[str, object], uri: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(FETCH), "--model-uri", uri, "--dest", str(dest)],
                          cwd=registry["root"], env=registry["env"], capture_output=True, text=True, timeout=300)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fetches_a_registered_bundle_replacing_the_old_one(registry: dict[str, object], tmp_path: Path) -> None:
    dest = tmp_path / "models" / "bundle"
    dest.mkdir(parents=True)
    (dest / "stale.onnx").write_bytes(b"old")
    done = _fetch(registry, "models:/bitzero/1", dest)
    assert done.returncode == 0, done.stderr
    assert _tree(dest) == _tree(registry["bundle"])
    assert sorted(p.name for p in dest.parent.iterdir()) == ["bundle"], "no staging folders left behind"


def test_refuses_a_model_that_is_not_a_bundle(registry: dict[str, object], tmp_path: Path) -> None:
    dest = tmp_path / "bundle"
    dest.mkdir()
    (dest / "bitzero.json").write_text("{}")
    done = _fetch(registry, "models:/other/1", dest)
    assert done.returncode == 1
    assert "not a BitZero bundle" in done.stderr and "Traceback" not in done.stderr
    assert _tree(dest) == {"bitzero.json": b"{}"}, "the folder in service stays as it was"


def test_unknown_version_is_a_clear_error(registry: dict[str, object], tmp_path: Path) -> None:
    done = _fetch(registry, "models:/bitzero/7", tmp_path / "bundle")
    assert done.returncode == 1
    assert "cannot download models:/bitzero/7" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "bundle").exists()
