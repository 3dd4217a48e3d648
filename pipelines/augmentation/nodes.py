"""Nodes of the augmentation stage: each one calls the library and returns."""

from collections import Counter
from pathlib import Path
from typing import Any

from bitzero.data.augment import augment_records
from bitzero.data.erasure import LEDGER
from bitzero.data.feedback import erased_record_ids, imitable, is_feedback, without_erased
from bitzero.data.mix import domain_weights, sample_mix, split_records
from bitzero.data.records import Record
from pipelines.tracking import report_metrics


def make_variants(
    records: list[Record], params: dict[str, Any]
) -> tuple[list[Record], dict[str, Any]]:
    """Math variants with changed numbers and recomputed answers, next to their originals; records
    a user erased (the service's erasure ledger) are dropped first, so no split made here holds them.
    A thumbs-down without a correction is no example to imitate: it is left to the personalize
    stage (as a one-sided preference pair) and only counted here."""
    erased = erased_record_ids(Path(params.get("erasure_ledger", LEDGER)))
    kept = without_erased(records, erased)
    augmented, stats = augment_records(
        [r for r in kept if imitable(r)],
        n_variants=params["math_variants"],
        seed=params["seed"],
        max_change=params["max_change"],
    )
    return augmented, {**stats, "feedback_not_imitated": sum(not imitable(r) for r in kept)}


def split(records: list[Record], params: dict[str, Any]) -> tuple[list[Record], list[Record]]:
    """Deterministic by record id: every variant lands on the same side as its original."""
    return split_records(records, params["validation_fraction"], params["seed"])


def mix(
    train: list[Record], params: dict[str, Any]
) -> tuple[list[Record], dict[str, Any]]:
    """Resample the training set to the domain mix (companion domains up-weighted); every feedback
    record is in it at least once."""
    counts = dict(Counter(r["type"] for r in train))
    weights = domain_weights(counts, params["upweight"])
    size = params["train_size"] or len(train)
    feedback = [r for r in train if is_feedback(r)]
    sampled, realised = sample_mix(train, weights, size, params["seed"], always=feedback)
    return sampled, {"domain_counts": counts, "domain_weights": weights, "domain_mix": realised,
                     "feedback_trained": len(feedback)}


def report(
    variant_stats: dict[str, Any],
    mix_stats: dict[str, Any],
    train: list[Record],
    validation: list[Record],
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """The stage's headline figures (DVC metrics) and the same numbers as MLflow metrics."""
    summary = {
        **variant_stats,
        "train_records": len(train),
        "validation_records": len(validation),
        **mix_stats,
    }
    return summary, report_metrics(summary)
