"""Model checkpoints as Kedro datasets, shared by the stages that read or write them (teacher,
distillation, self-play, personalize): model, tokenizer and metadata travel together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from kedro.io import AbstractDataset, DatasetError

from bitzero.export.registry import register_bundle
from bitzero.model import BitZeroLM, CheckpointError, load_checkpoint, read_checkpoint_config, save_checkpoint
from bitzero.model.checkpoint import TOKENIZER_FILE
from bitzero.text import Tokenizer


class CheckpointDataset(AbstractDataset[dict[str, Any], BitZeroLM]):
    """A checkpoint folder (bitzero.model.save_checkpoint), also logged as an MLflow artifact.

    Save takes ``{"model", "tokenizer" (bitzero.text.Tokenizer), "metadata"}``; load returns the
    model in eval mode. With an active MLflow run and an ``artifact_path``, the folder is logged
    there too, and with ``registered_model`` that artifact becomes the model's next version.
    """

    def __init__(
        self, filepath: str, artifact_path: str | None = None, registered_model: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = Path(filepath)
        self._artifact_path = artifact_path
        self._registered_model = registered_model
        self.metadata = metadata

    def load(self) -> BitZeroLM:
        return load_checkpoint(self._filepath)

    def save(self, data: dict[str, Any]) -> None:
        tokenizer: Tokenizer = data["tokenizer"]
        save_checkpoint(data["model"], self._filepath, tokenizer=tokenizer, metadata=data.get("metadata"))
        if mlflow.active_run() is None:
            return
        if self._artifact_path:
            mlflow.log_artifacts(str(self._filepath), self._artifact_path)
        if self._registered_model:
            role = str((data.get("metadata") or {}).get("role", "checkpoint"))
            register_bundle(self._filepath, self._registered_model, {"role": role},
                            model_type="bitzero-checkpoint")

    def _exists(self) -> bool:
        return (self._filepath / "config.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "artifact_path": self._artifact_path,
                "registered_model": self._registered_model}


class PolicyCheckpointDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """A checkpoint folder as `{"model", "tokenizer", "metadata"}` (load and save)."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        tokenizer_path = self._filepath / TOKENIZER_FILE
        if not tokenizer_path.is_file():
            raise DatasetError(
                f"no checkpoint with a tokenizer at {self._filepath}; run the stage that writes it first (dvc repro)"
            )
        try:
            model = load_checkpoint(self._filepath)
            _, metadata = read_checkpoint_config(self._filepath)
        except CheckpointError as error:
            raise DatasetError(str(error)) from error
        return {"model": model, "tokenizer": Tokenizer.load(tokenizer_path), "metadata": metadata}

    def save(self, data: dict[str, Any]) -> None:
        save_checkpoint(data["model"], self._filepath, data["tokenizer"], data.get("metadata"))

    def _exists(self) -> bool:
        return (self._filepath / "config.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
