"""Nodes of the personalize stage: load, call the library, return."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import mlflow
import torch

from bitzero.data.erasure import LEDGER
from bitzero.data.feedback import erased_record_ids, preference_pair, without_erased
from bitzero.data.records import COMPANION_TYPES, Record
from bitzero.export.lineage import check_checkpoint
from bitzero.train.dpo import DPOConfig, personalize, split_pairs
from bitzero.train.examples import records_to_examples
from pipelines.tracking import metric_name, report_metrics

log = logging.getLogger(__name__)


def personalize_model(
    lineage: dict[str, Any], student: dict[str, Any], records: list[Record], validation: list[Record],
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """DPO on the feedback pairs (erased users' records dropped first) for the served lineage's
    self-played model; with none, it passes through unchanged. The checkpoint names this run as its
    source for the export stage."""
    kind = check_checkpoint(lineage, student.get("metadata", {}), "the self-played checkpoint")
    torch.set_num_threads(params["torch_threads"])
    cfg = DPOConfig.from_dict(params["dpo"])
    erased = erased_record_ids(Path(params.get("erasure_ledger", LEDGER)))
    pairs = [p for r in without_erased(records, erased) if (p := preference_pair(r)) is not None]
    train, heldout = split_pairs(pairs, cfg.heldout_fraction, cfg.seed)
    history: dict[str, list[dict[str, float]]] = defaultdict(list)

    def on_metrics(step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            history[metric_name(f"dpo/{key}")].append({"value": float(value), "step": step})

    if not train:
        model = student["model"]
        report: dict[str, Any] = {"lineage": kind, "pairs": len(pairs), "kept_pre_step_model": True,
                                  "status": "nothing to learn from: no feedback pairs" if not pairs
                                  else "nothing to learn from: no training pairs (all held out)"}
    else:
        conversations = [r for r in validation if r.get("type") in COMPANION_TYPES][: cfg.nll_conversations]
        examples = records_to_examples(conversations, student["tokenizer"])
        model, report = personalize(student["model"], student["tokenizer"], train, heldout, examples, cfg, on_metrics)
        report = {"lineage": kind, "pairs": len(pairs), **report}
    log.info("personalize the %s: %s (%d pairs)%s", kind, report["status"], len(pairs),
             "; the input passes through" if report["kept_pre_step_model"] else "")
    run = mlflow.active_run()
    metadata = {**student.get("metadata", {}), "stage": "personalize", "personalize": report,
                "mlflow_run_id": run.info.run_id if run else None}
    return ({"model": model, "tokenizer": student["tokenizer"], "metadata": metadata}, report,
            {**report_metrics(report), **history})
