"""Tag each MLflow run with what reproduces it: the git commit and the DVC stage."""

import os
import subprocess
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


class RunTagsHook:
    """Runs after kedro-mlflow has opened the stage's run (trylast)."""

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        if mlflow.active_run() is None:
            return
        mlflow.set_tags(
            {
                "git_commit": _git_commit(),
                "dvc_stage": os.environ.get("DVC_STAGE", "none (kedro run by hand)"),
                "kedro_env": run_params.get("env") or "local",
            }
        )
