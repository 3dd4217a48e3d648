"""The retrain CronJob's script, run as the pod runs it (the training image has no git: DVC without
an SCM): the first run snapshots the service's consented feedback, reproduces the stages and
pushes their outputs to the DVC remote; the next pod, which starts from a fresh image, finds the
lock file kept on the data volume and re-runs nothing. (DVC's own re-run-what-changed logic is
tested with the data stages in tests/pipelines.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.manifests import REPO
from tests.pipelines.conftest import BIN, project  # noqa: F401 - the throwaway project fixture

pytestmark = pytest.mark.timeout(900)
SCRIPT = Path("deploy/docker/retrain.sh")


def _fresh_pod(root: Path) -> None:
    """What the image holds and nothing a previous pod wrote outside the data volume."""
    (root / "dvc.lock").unlink(missing_ok=True)
    shutil.rmtree(root / ".dvc", ignore_errors=True)
    shutil.copytree(REPO / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp", "config.local"))
    done = subprocess.run([str(BIN / "dvc"), "config", "--local", "core.no_scm", "true"], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _retrain(root: Path, env: dict[str, str], *targets: str) -> str:
    done = subprocess.run(["sh", str(SCRIPT), *targets], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_retrain_reproduces_pushes_and_resumes_from_the_kept_lock(project: Path, tmp_path: Path) -> None:  # noqa: F811 - the fixture, imported above
    shutil.copytree(REPO / SCRIPT.parent, project / SCRIPT.parent)
    shutil.copy2(REPO / ".dvcignore", project / ".dvcignore")
    remote, volume, image_raw = tmp_path / "remote", tmp_path / "volume", tmp_path / "image-raw"
    # The data volume mounted over data/ hides the image's seed: the image keeps a copy elsewhere.
    image_raw.mkdir()
    (project / "data" / "01_raw" / "seed.jsonl").rename(image_raw / "seed.jsonl")
    for name in ("gsm8k", "mbpp", "synthetic_persona_chat", "topical_chat", "goemotions"):  # the image's open data
        shutil.copytree(REPO / "data" / "01_raw" / name, image_raw / name)
    env = {
        **os.environ,
        "BITZERO_RAW_DATA": str(image_raw),
        "KEDRO_ENV": "test",
        "DVC_REMOTE_URL": str(remote),
        "DVC_CACHE_DIR": str(volume / ".dvc-cache"),
        "DVC_LOCK_FILE": str(volume / "dvc.lock"),
        "BITZERO_DATABASE_URL": f"sqlite:///{tmp_path}/companion.db",
    }
    volume.mkdir()

    _fresh_pod(project)
    first = _retrain(project, env, "vocabulary")
    assert "Running stage 'teacher'" in first and "Running stage 'vocabulary'" in first
    assert (volume / "dvc.lock").is_file()
    assert (project / "data" / "01_raw" / "seed.jsonl").read_bytes() == (image_raw / "seed.jsonl").read_bytes()
    assert (project / "data" / "01_raw" / "feedback" / "service.jsonl").is_file(), "the feedback snapshot"
    pushed = [p for p in remote.rglob("*") if p.is_file()]
    assert len(pushed) >= 3, "the stage's outputs are on the remote"

    _fresh_pod(project)
    second = _retrain(project, env, "vocabulary")
    assert "Running stage" not in second and "didn't change" in second


def test_retrain_without_a_remote_stops_with_a_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DVC_REMOTE_URL"}
    done = subprocess.run(["sh", str(REPO / SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and "DVC_REMOTE_URL" in done.stderr
