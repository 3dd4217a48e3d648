"""The emotion classifier file: what the service loads (and the export stage puts in the bundle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from bitzero.companion.emotion import EmotionClassifier


class EmotionClassifierDataset(AbstractDataset[tuple[EmotionClassifier, dict[str, Any]], EmotionClassifier]):
    """Saves `(classifier, report)` as one JSON file (written atomically); loads the classifier."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> EmotionClassifier:
        return EmotionClassifier.load(self._filepath)

    def save(self, data: tuple[EmotionClassifier, dict[str, Any]]) -> None:
        classifier, report = data
        classifier.save(self._filepath, report)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
