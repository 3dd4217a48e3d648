"""Turn a stage's report into MLflow metrics (kedro-mlflow's MlflowMetricsHistoryDataset format)."""

import re
from collections.abc import Mapping
from typing import Any

# MLflow metric names allow alphanumerics, _ - . space : and /; report keys can be free text.
_NOT_ALLOWED = re.compile(r"[^\w\-. :/]+")


def metric_name(key: str) -> str:
    """A report key as a valid MLflow metric name."""
    return _NOT_ALLOWED.sub("_", key).strip("_ ") or "_"


def report_metrics(report: Mapping[str, Any], prefix: str = "") -> dict[str, dict[str, float]]:
    """Every number in a (nested) report becomes one metric at step 0: the headline figures."""
    metrics: dict[str, dict[str, float]] = {}
    for key, value in report.items():
        name = f"{prefix}{metric_name(str(key))}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            metrics[name] = {"value": float(value), "step": 0}
        elif isinstance(value, Mapping):
            metrics.update(report_metrics(value, prefix=f"{name}."))
    return metrics
