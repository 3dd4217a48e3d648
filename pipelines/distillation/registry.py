"""A teacher from the MLflow model registry: ``models:/<name>/<version>`` names a checkpoint folder.

A model version whose source is a logged checkpoint folder (``CheckpointDataset`` logs
``teacher/`` and ``student/`` in every run) is downloaded and loaded with ``load_checkpoint``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow

from bitzero.model import BitZeroLM, CheckpointError, load_checkpoint

CHECKPOINT_FILES = ("config.json", "model.safetensors")


def find_checkpoint(root: Path) -> Path:
    """The one folder under ``root`` holding a checkpoint's config and weights."""
    found = sorted(
        path.parent
        for path in root.rglob(CHECKPOINT_FILES[0])
        if all((path.parent / name).is_file() for name in CHECKPOINT_FILES)
    )
    if len(found) != 1:
        raise CheckpointError(
            f"expected one checkpoint folder ({' + '.join(CHECKPOINT_FILES)}) in the registered "
            f"model, found {len(found)} under {root}"
        )
    return found[0]


def load_registered_model(uri: str) -> BitZeroLM:
    """Download ``models:/name/version`` (the prefix may be left out) and load it."""
    uri = uri if uri.startswith("models:/") else f"models:/{uri}"
    with tempfile.TemporaryDirectory(prefix="bitzero-teacher-") as scratch:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=scratch)
        except mlflow.exceptions.MlflowException as exc:
            raise CheckpointError(f"cannot download the registered teacher {uri}: {exc}") from exc
        return load_checkpoint(find_checkpoint(Path(local)))
