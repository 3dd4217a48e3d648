"""Nodes of the self-play stage: load, call the library, return."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from bitzero.selfplay.config import SelfPlayConfig
from bitzero.selfplay.experiment import run_experiment
from pipelines.plots import Row, table
from pipelines.tracking import metric_name, report_metrics

log = logging.getLogger(__name__)
ARMS = ("ppo", "sft_only")  # the loop with PPO, and the ablation without it (when run)


def self_play(
    student: dict[str, Any], teacher: dict[str, Any], params: dict[str, Any]
) -> tuple[dict[str, Any], list[dict], list[dict], dict[str, Any], dict[str, Any], list[Row]]:
    """Propose/verify/solve with PPO on the student; held-out rates before/after (the teacher's
    as the reference), PPO ablation; the solve rate of each iteration per arm as a plot table."""
    cfg = SelfPlayConfig.from_dict(params)
    history: dict[str, list[dict[str, float]]] = defaultdict(list)

    def on_metrics(arm: str, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            history[metric_name(f"{arm}/{key}")].append({"value": float(value), "step": step})

    outcome = run_experiment(student["model"], student["tokenizer"], cfg, on_metrics, log.info,
                             reference=(teacher["model"], teacher["tokenizer"]))
    metadata = {**student.get("metadata", {}), "selfplay": {
        "heldout_solve_rate_before": outcome.report["heldout_solve_rate_before"],
        "heldout_solve_rate_after": outcome.report["heldout_solve_rate_after"],
        "heldout_solve_rate_teacher": outcome.report["heldout_solve_rate_teacher"],
    }}
    model = {"model": outcome.model, "tokenizer": student["tokenizer"], "metadata": metadata}
    metrics = {**report_metrics(outcome.report), **history}
    solve_rates = table("iteration", {
        arm: [(point["step"], point["value"]) for point in history.get(f"{arm}/solve_rate", [])] for arm in ARMS
    })
    return model, outcome.buffer, outcome.heldout, outcome.report, metrics, solve_rates
