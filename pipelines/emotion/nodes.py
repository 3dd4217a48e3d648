"""Nodes of the emotion stage: load, call the library, return."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from bitzero.companion.embeddings import ensure_embedder
from bitzero.companion.emotion import EmotionClassifier
from bitzero.companion.emotion_finetune import FinetuneSettings
from bitzero.companion.emotion_training import confusion_figure, fit_goemotions, fit_records
from bitzero.data.records import Record
from pipelines.tracking import report_metrics

log = logging.getLogger(__name__)


def train_emotion(
    records: list[Record], params: dict[str, Any]
) -> tuple[tuple[EmotionClassifier, dict[str, Any]], dict[str, Any], dict[str, Any], Figure]:
    """The classifier on GoEmotions when its copy is at `goemotions_dir` (a word softmax averaged
    with fine-tuned MiniLM), else on the emotional records of the training data (words plus the
    frozen MiniLM embedding; the sentence embedder, the service's too, is converted here when
    missing, for a `kedro run` on its own)."""
    folder = Path(params["goemotions_dir"]) if params.get("goemotions_dir") else None
    if folder is not None and folder.is_dir():
        classifier, report = fit_goemotions(folder, limit=params["max_rows"], dev_limit=params["max_dev_rows"],
                                            finetune_rows=params["finetune_rows"],
                                            finetune=FinetuneSettings(**params["finetune"]))
    else:
        log.info("no GoEmotions at %s: training on the emotional records of the training data", folder)
        embedder = ensure_embedder(params["embedder_dir"], threads=params["threads"])
        classifier, report = fit_records(records, embedder, seed=params["seed"])
    log.info("emotion classifier from %s: dev macro-F1 %.3f (keyword baseline %.3f)", report["source"],
             report["dev_macro_f1_ekman"], report["keyword_baseline_dev_macro_f1_ekman"])
    figure = confusion_figure(report["confusion_ekman"], f"emotion reader on {report['source']} dev "
                              f"(Ekman macro-F1 {report['dev_macro_f1_ekman']:.3f})")
    return (classifier, report), report, report_metrics(report), figure
