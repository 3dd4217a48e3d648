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


class RawLinesDataset(AbstractDataset[None, list[bytes]]):  # [saved, loaded]: read-only
    """Raw lines of a file written by people (read-only): parsing and quarantine happen in a node."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> list[bytes]:
        if not self._filepath.exists():
            raise DatasetError(f"Raw data file not found: {self._filepath}")
        with self._filepath.open("rb") as handle:
            return handle.readlines()

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._filepath} is raw input and read-only")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class RawLinesFolderDataset(AbstractDataset[None, dict[str, list[bytes]]]):  # [saved, loaded]: read-only
    """Raw lines of every ``*.jsonl`` file in a folder, by file name (read-only).

    The folder collects files that arrive over time, such as feedback exported from the service;
    an empty or missing folder is simply no data.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> dict[str, list[bytes]]:
        if not self._path.is_dir():
            return {}
        return {
            file.name: file.read_bytes().splitlines(keepends=True)
            for file in sorted(self._path.glob("*.jsonl"))
        }

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._path} is raw input and read-only")

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
