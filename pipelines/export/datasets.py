"""A checkpoint folder as a Kedro input: the node gets its path once the folder is complete."""

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")


class CheckpointFolderDataset(AbstractDataset[str, None]):
    """Read-only: the path of a checkpoint folder written by an earlier stage."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> str:
        missing = [name for name in REQUIRED if not (self._path / name).is_file()]
        if missing:
            raise DatasetError(
                f"checkpoint folder {self._path} is incomplete (missing: {', '.join(missing)}); "
                "run the stage that writes it first"
            )
        return str(self._path)

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._path} is an input of the export stage and read-only here")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
