"""Stage reports become valid MLflow metrics."""

from pipelines.tracking import report_metrics


def test_nested_numbers_become_metrics_with_valid_names() -> None:
    report = {
        "records": 10,
        "ok": True,
        "label": "text",
        "skip_reasons": {"ambiguous number (two sources now disagree)": 3},
        "mix": {"math": 0.25},
    }
    metrics = report_metrics(report)
    assert metrics == {
        "records": {"value": 10.0, "step": 0},
        "skip_reasons.ambiguous number _two sources now disagree": {"value": 3.0, "step": 0},
        "mix.math": {"value": 0.25, "step": 0},
    }
