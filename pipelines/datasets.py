"""Kedro datasets for the project's own file formats."""

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from bitzero.data.records import Record, iter_jsonl, write_jsonl


class JsonLinesDataset(AbstractDataset[list[Record], list[Record]]):
    """Records as JSON Lines, written atomically so a crash mid-write leaves the old file whole."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> list[Record]:
        return list(iter_jsonl(self._filepath))

    def save(self, data: list[Record]) -> None:
        write_jsonl(self._filepath, data)

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class RawLinesDataset(AbstractDataset[list[bytes], None]):
    """Raw lines of a file written by people (read-only): parsing and quarantine happen in a node."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> list[bytes]:
        if not self._filepath.exists():
            raise DatasetError(f"Raw data file not found: {self._filepath}")
        with self._filepath.open("rb") as handle:
            return handle.readlines()

    def save(self, data: list[bytes]) -> None:
        raise DatasetError(f"{self._filepath} is raw input and read-only")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
