"""Model checkpoints as a Kedro dataset (written by rank 0 only through ``MainRankDataset``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from kedro.io import AbstractDataset

from bitzero.model import BitZeroLM, load_checkpoint, save_checkpoint
from bitzero.text import Tokenizer


class CheckpointDataset(AbstractDataset[dict[str, Any], BitZeroLM]):
    """A checkpoint folder (bitzero.model.save_checkpoint), also logged as an MLflow artifact.

    Save takes ``{"model", "tokenizer" (bitzero.text.Tokenizer), "metadata"}``; load returns the
    model in eval mode. With an active MLflow run and an ``artifact_path``, the folder is logged
    there too, so it can be registered as a model version (see the stage's README section).
    """

    def __init__(
        self, filepath: str, artifact_path: str | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        self._filepath = Path(filepath)
        self._artifact_path = artifact_path
        self.metadata = metadata

    def load(self) -> BitZeroLM:
        return load_checkpoint(self._filepath)

    def save(self, data: dict[str, Any]) -> None:
        tokenizer: Tokenizer = data["tokenizer"]
        save_checkpoint(data["model"], self._filepath, tokenizer=tokenizer, metadata=data.get("metadata"))
        if self._artifact_path and mlflow.active_run() is not None:
            mlflow.log_artifacts(str(self._filepath), self._artifact_path)

    def _exists(self) -> bool:
        return (self._filepath / "config.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "artifact_path": self._artifact_path}
