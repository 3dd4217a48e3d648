"""Project hooks: tag each MLflow run with what reproduces it; report input errors without a traceback."""

import logging
import os
import subprocess
import sys
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    # What `dvc repro` writes between stages (dvc.lock, the reports) is no edit of the code or settings.
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)dvc.lock",
         ":(exclude)data/08_reporting"],
        capture_output=True, text=True,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def is_input_error(error: BaseException) -> bool:
    """BitZero's own exceptions describe bad input or settings; anything else is a bug."""
    return type(error).__module__.startswith("bitzero.")


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


class InputErrorHook:
    """A stage stopped by bad input ends with its message and exit status 1, not a traceback.

    Runs last, after kedro-mlflow has closed the run as failed; programming errors keep their
    traceback.
    """

    @hook_impl(trylast=True)
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any]) -> None:
        if not is_input_error(error):
            return
        pipelines = ", ".join(run_params.get("pipeline_names") or ["__default__"])
        message = f"Stage {pipelines} stopped: {error}"
        logger.error(message)
        print(f"\nerror: {message}", file=sys.stderr)
        raise SystemExit(1)
