"""Nodes of the emotion stage: load, call the library, return."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bitzero.companion.embeddings import ensure_embedder
from bitzero.companion.emotion import EmotionClassifier
from bitzero.companion.emotion_training import fit_goemotions, fit_records
from bitzero.data.records import Record
from pipelines.tracking import report_metrics

log = logging.getLogger(__name__)


def train_emotion(
    records: list[Record], params: dict[str, Any]
) -> tuple[tuple[EmotionClassifier, dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """The classifier on GoEmotions when its copy is at `goemotions_dir`, else on the emotional
    records of the training data; words and word pairs plus MiniLM embeddings, one logistic
    regression. The sentence embedder (the service's too; the `embedder` DVC stage converts it) is
    converted here when missing, for a `kedro run` on its own."""
    embedder = ensure_embedder(params["embedder_dir"], threads=params["threads"])
    folder = Path(params["goemotions_dir"]) if params.get("goemotions_dir") else None
    if folder is not None and folder.is_dir():
        cache = Path(params["embedding_cache"]) if params.get("embedding_cache") else None
        classifier, report = fit_goemotions(folder, embedder, limit=params["max_rows"],
                                            dev_limit=params["max_dev_rows"], cache=cache)
    else:
        log.info("no GoEmotions at %s: training on the emotional records of the training data", folder)
        classifier, report = fit_records(records, embedder, seed=params["seed"])
    log.info("emotion classifier from %s: dev macro-F1 %.3f (keyword baseline %.3f)", report["source"],
             report["dev_macro_f1_ekman"], report["keyword_baseline_dev_macro_f1_ekman"])
    return (classifier, report), report, report_metrics(report)
