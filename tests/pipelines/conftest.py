"""A throwaway copy of the project, so pipeline runs never touch the real data/ or mlflow/."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bitzero.model import save_checkpoint
from bitzero.model.pretrained import import_pretrained
from tests.tiny import tiny_hf_checkpoint

REPO = Path(__file__).resolve().parents[2]
RAW_DATA = REPO / "data" / "01_raw"  # the vendored open datasets
BIN = Path(sys.executable).parent


def _seed_only(folder: str, names: list[str]) -> list[str]:
    """The seed dataset and the feedback folder of data/01_raw (the micro profile reads no other)."""
    return [n for n in names if n not in ("seed.jsonl", ".gitkeep", "feedback")]


def _copy_project(dest: Path) -> Path:
    for name in ("pipelines", "conf", "src"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "local"))
    (dest / "conf" / "local").mkdir()
    for name in ("pyproject.toml", "dvc.yaml"):
        shutil.copy2(REPO / name, dest / name)
    (dest / "data").mkdir()
    shutil.copytree(REPO / "data" / "01_raw", dest / "data" / "01_raw", ignore=_seed_only)
    (dest / "mlflow").mkdir()
    tiny_hf_checkpoint(dest / "tiny-teacher")  # conf/test's teacher source
    write_teacher(dest)
    return dest


def write_teacher(root: Path) -> None:
    """What the teacher stage writes, from the tiny checkpoint: for tests of the later stages."""
    model, tokenizer, facts = import_pretrained(str(root / "tiny-teacher"), context=256)
    save_checkpoint(model, root / "data" / "06_models" / "teacher", tokenizer=tokenizer,
                    metadata={"role": "teacher", **facts})
    tokenizer.save(root / "data" / "06_models" / "teacher_tokenizer.json")


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


@pytest.fixture
def dvc_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project copy as a git repository with DVC and every stage's inputs, on the micro profile
    (KEDRO_ENV=test, as `dvc repro` and `dvc exp run` pick it)."""
    shutil.copytree(REPO / ".dvc", project / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    for name in (".dvcignore", ".gitignore"):
        shutil.copy2(REPO / name, project / name)
    for name in ("gsm8k", "mbpp", "synthetic_persona_chat", "topical_chat", "goemotions"):  # DVC deps
        shutil.copytree(RAW_DATA / name, project / "data" / "01_raw" / name)
    monkeypatch.setenv("KEDRO_ENV", "test")
    git_repository(project)
    return project


def git_repository(root: Path) -> str:
    """``root`` as a git repository whose one commit holds every file; that commit's id."""
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def dvc(root: Path, *args: str) -> str:
    """`dvc ARGS` in the project copy; its output, after checking that it succeeded."""
    done = subprocess.run([str(BIN / "dvc"), *args], cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


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
