"""A throwaway copy of the project, so pipeline runs never touch the real data/ or mlflow/."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent


def _not_in_git(folder: str, names: list[str]) -> list[str]:
    """Only what a fresh clone of data/01_raw has: the seed dataset and the .gitkeep files."""
    return [n for n in names if n not in ("seed.jsonl", ".gitkeep", "feedback")]


def _copy_project(dest: Path) -> Path:
    for name in ("pipelines", "conf", "src"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "local"))
    (dest / "conf" / "local").mkdir()
    for name in ("pyproject.toml", "dvc.yaml"):
        shutil.copy2(REPO / name, dest / name)
    (dest / "data").mkdir()
    shutil.copytree(REPO / "data" / "01_raw", dest / "data" / "01_raw", ignore=_not_in_git)
    (dest / "mlflow").mkdir()
    return dest


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project with its own MLflow store; the working directory is its root."""
    root = _copy_project(tmp_path / "project")
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow/mlflow.db")
    monkeypatch.setenv("MLFLOW_ARTIFACT_LOCATION", str(root / "mlflow" / "artifacts"))
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return root


def kedro_run(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`kedro run ARGS` in the project copy, as a user would type it (with `env` over os.environ)."""
    return subprocess.run(
        [str(BIN / "kedro"), "run", *args], cwd=root, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=600,
    )


def torchrun_kedro(root: Path, *args: str, processes: int = 2) -> subprocess.CompletedProcess[str]:
    """`torchrun --standalone --nproc-per-node N -m kedro run ARGS`: N CPU ranks (gloo) on this machine."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
         "-m", "kedro", "run", *args],
        cwd=root, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600,
    )
