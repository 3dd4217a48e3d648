"""Turn a stage's report into MLflow metrics (kedro-mlflow's MlflowMetricsHistoryDataset format)."""

from collections.abc import Mapping
from typing import Any


def report_metrics(report: Mapping[str, Any], prefix: str = "") -> dict[str, dict[str, float]]:
    """Every number in a (nested) report becomes one metric at step 0: the headline figures."""
    metrics: dict[str, dict[str, float]] = {}
    for key, value in report.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            metrics[name] = {"value": float(value), "step": 0}
        elif isinstance(value, Mapping):
            metrics.update(report_metrics(value, prefix=f"{name}."))
    return metrics
