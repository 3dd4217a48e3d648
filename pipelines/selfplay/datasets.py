"""The self-play stage's model checkpoints: model and tokenizer travel together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from bitzero.model import CheckpointError, load_checkpoint, read_checkpoint_config, save_checkpoint
from bitzero.model.checkpoint import TOKENIZER_FILE
from bitzero.text import Tokenizer


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
