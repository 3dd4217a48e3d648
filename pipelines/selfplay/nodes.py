"""Nodes of the self-play stage: load, call the library, return."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from bitzero.data.records import COMPANION_TYPES, Record
from bitzero.export.gate import STUDENT
from bitzero.export.lineage import from_distillation, served
from bitzero.selfplay.config import SelfPlayConfig
from bitzero.selfplay.experiment import run_experiment
from bitzero.selfplay.guard import chat_guard
from bitzero.train.examples import records_to_examples
from pipelines.plots import Row, table
from pipelines.tracking import metric_name, report_metrics

log = logging.getLogger(__name__)
ARMS = ("ppo", "sft_only")  # the loop with PPO, and the ablation without it (when run)


def choose_lineage(distillation: dict[str, Any], gate_factor: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Which model self-play and personalize train, chosen once, here: the one the export's gate is
    predicted to serve (bitzero.export.lineage). Returned twice: for this stage's next node (in
    memory: under torchrun only rank 0 writes the file) and as the record later stages read."""
    record = from_distillation(distillation, gate_factor)
    log.info("lineage: %s", record["reason"])
    return record, record


def self_play(
    lineage: dict[str, Any], student: dict[str, Any], teacher: dict[str, Any], validation: list[Record],
    params: dict[str, Any],
) -> tuple[dict[str, Any], list[dict], list[dict], dict[str, Any], dict[str, Any], list[Row]]:
    """Propose/verify/solve with PPO on the served lineage; held-out rates before/after (while the
    student is trained, the teacher's as the reference), PPO ablation; the solve rate of each
    iteration per arm as a plot table. A candidate that talks worse on validation conversations
    (``params.chat_guard``) is not shipped; with nothing to learn from, the input passes through."""
    settings = {key: value for key, value in params.items() if key != "chat_guard"}
    cfg = SelfPlayConfig.from_dict(settings)
    kind = served(lineage)
    trained = student if kind == STUDENT else teacher
    limits, tokenizer = params["chat_guard"], trained["tokenizer"]
    conversations = [r for r in validation if r.get("type") in COMPANION_TYPES][: limits["conversations"]]
    guard = chat_guard(trained["model"], records_to_examples(conversations, tokenizer), limits["nll_tolerance"],
                       limits["seq_len"], tokenizer.pad_id)
    history: dict[str, list[dict[str, float]]] = defaultdict(list)

    def on_metrics(arm: str, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            history[metric_name(f"{arm}/{key}")].append({"value": float(value), "step": step})

    reference = (teacher["model"], teacher["tokenizer"]) if kind == STUDENT else None
    outcome = run_experiment(trained["model"], tokenizer, cfg, on_metrics, log.info, reference=reference, guard=guard)
    report = {"lineage": kind, **outcome.report}
    log.info("self-play on the %s: %s; held-out solve rate %.3f -> %.3f", kind, report["status"],
             report["heldout_solve_rate_before"], report["heldout_solve_rate_after"])
    metadata = {**trained.get("metadata", {}), "lineage": kind, "selfplay": {
        key: report.get(key) for key in ("status", "heldout_solve_rate_before", "heldout_solve_rate_after",
                                         "heldout_solve_rate_teacher")
    }}
    model = {"model": outcome.model, "tokenizer": trained["tokenizer"], "metadata": metadata}
    metrics = {**report_metrics(report), **history}
    solve_rates = table("iteration", {
        arm: [(point["step"], point["value"]) for point in history.get(f"{arm}/solve_rate", [])] for arm in ARMS
    })
    return model, outcome.buffer, outcome.heldout, report, metrics, solve_rates
