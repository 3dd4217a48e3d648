"""Outputs of earlier stages as Kedro inputs: the node gets a path once what it names is complete."""

import json
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError


class StageOutputPathDataset(AbstractDataset[None, str]):  # [saved, loaded]
    """Read-only: the path of a file, or of a folder holding the `required` files, written by an
    earlier stage (`stage` names it in the error message)."""

    def __init__(self, path: str, stage: str, required: list[str] | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self._stage = stage
        self._required = list(required or [])
        self.metadata = metadata

    def load(self) -> str:
        if not self._path.exists():
            raise DatasetError(f"{self._path} does not exist; run the {self._stage} stage first")
        missing = [name for name in self._required if not (self._path / name).is_file()]
        if missing:
            raise DatasetError(
                f"{self._path} is incomplete (missing: {', '.join(missing)}); run the {self._stage} stage first"
            )
        return str(self._path)

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._path} is an input of the export stage and read-only here")

    def _exists(self) -> bool:
        return self._path.exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "stage": self._stage}


class StageOutputJSONDataset(StageOutputPathDataset):
    """Read-only: a JSON file written by an earlier stage, loaded (a missing one names the stage)."""

    def load(self) -> Any:
        return json.loads(Path(super().load()).read_text(encoding="utf-8"))
