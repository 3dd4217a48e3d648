"""Plot tables: a JSON file that `dvc plots show` draws, and the same table with its picture in the
stage's MLflow run."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from kedro.io import AbstractDataset
from matplotlib.figure import Figure

from bitzero.files import write_atomically

Row = dict[str, float | None]


def table(x: str, series: Mapping[str, Iterable[tuple[float, float]]]) -> list[Row]:
    """Series as one table: a row per x value, a column per series, None where a series has no
    point there (DVC reads a plot file only when every row has the same keys)."""
    points = {name: dict(values) for name, values in series.items()}
    xs = sorted({value for by_x in points.values() for value in by_x})
    return [{x: value, **{name: by_x.get(value) for name, by_x in points.items()}} for value in xs]


def line_figure(rows: Sequence[Row], x: str, title: str, ylabel: str) -> Figure:
    """A line per column over ``x``, each skipping its missing points: the picture MLflow shows."""
    figure = Figure(figsize=(6.4, 4.0))
    axes = figure.subplots()
    for column in (key for key in rows[0] if key != x) if rows else ():
        drawn = [(row[x], row[column]) for row in rows if row[column] is not None]
        if drawn:
            axes.plot(*zip(*drawn, strict=True), marker="o", label=column)
    axes.set_xlabel(x)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    if axes.lines:
        axes.legend()
    figure.tight_layout()
    return figure


class PlotDataset(AbstractDataset[list[Row], list[Row]]):
    """A plot table as JSON at ``filepath`` (DVC plot data, written atomically); inside an MLflow run
    also logged under ``plots/`` with its line picture, so both tools show the same figure."""

    def __init__(self, filepath: str, x: str, title: str, ylabel: str,
                 metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self._x, self._title, self._ylabel = x, title, ylabel
        self.metadata = metadata

    def load(self) -> list[Row]:
        return json.loads(self._filepath.read_text(encoding="utf-8"))

    def save(self, data: list[Row]) -> None:
        write_atomically(self._filepath, json.dumps(data, indent=1).encode())
        if mlflow.active_run() is not None:
            mlflow.log_artifact(str(self._filepath), artifact_path="plots")
            mlflow.log_figure(line_figure(data, self._x, self._title, self._ylabel),
                              f"plots/{self._filepath.stem}.png")

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "x": self._x}
