"""The bundle in MLflow: which training run it came from, and its entry in the model registry.

MLflow 3 keeps models apart from runs: the bundle folder becomes the artifacts of a LoggedModel
(linked to the export run and to the source run by tags), which is then registered as a new
version of a registered model. Nothing here needs the bundle's files to be an MLflow flavour:
the service loads them with bitzero.serving.runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient


def source_run_id(metadata: dict[str, Any], stage: str) -> str | None:
    """The MLflow run that trained the checkpoint: from its metadata, else the stage's latest run."""
    if metadata.get("mlflow_run_id"):
        return str(metadata["mlflow_run_id"])
    experiment = mlflow.get_experiment_by_name(mlflow_experiment_name())
    if experiment is None:
        return None
    runs = MlflowClient().search_runs(
        [experiment.experiment_id],
        filter_string=f"attributes.run_name = '{stage}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def mlflow_experiment_name() -> str:
    active = mlflow.active_run()
    if active is not None:
        return MlflowClient().get_experiment(active.info.experiment_id).name
    return "bitzero"


def register_bundle(
    bundle_dir: str | Path, name: str, tags: dict[str, str], model_type: str = "bitzero-onnx-bundle"
) -> dict[str, Any]:
    """Upload a folder (a bundle, or a checkpoint with ``model_type``) as a LoggedModel and
    register it; returns ids, version and URI."""
    active = mlflow.active_run()
    model = mlflow.initialize_logged_model(
        name=name,
        source_run_id=active.info.run_id if active else None,
        tags=tags,
        model_type=model_type,
    )
    try:
        MlflowClient().log_model_artifacts(model.model_id, str(bundle_dir))
    except Exception:
        mlflow.finalize_logged_model(model.model_id, "FAILED")
        raise
    mlflow.finalize_logged_model(model.model_id, "READY")
    version = mlflow.register_model(f"models:/{model.model_id}", name, tags=tags)
    return {
        "registered_model": name,
        "version": int(version.version),
        "logged_model_id": model.model_id,
        "model_uri": f"models:/{name}/{version.version}",
    }


def set_alias(name: str, version: int, alias: str) -> None:
    """Point the registered model's ``alias`` (e.g. ``champion``) at ``version``."""
    MlflowClient().set_registered_model_alias(name, alias, str(version))
