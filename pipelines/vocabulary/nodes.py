"""Nodes of the vocabulary stage: each one calls the library and returns."""

import logging
from pathlib import Path
from typing import Any

from bitzero.data.erasure import FEEDBACK_FOLDER, LEDGER, purge_feedback_files
from bitzero.data.feedback import erased_record_ids, without_erased
from bitzero.data.readers import read_sources
from bitzero.data.records import Record, parse_jsonl_lines, record_text
from bitzero.data.validation import enforce_quarantine_limit, validate_records
from bitzero.text.tokenizer import Tokenizer
from bitzero.text.vocabulary import check_vocabulary
from pipelines.tracking import report_metrics

logger = logging.getLogger(__name__)


def purge_erased_feedback(
    raw_feedback: dict[str, list[bytes]], params: dict[str, Any]
) -> tuple[dict[str, list[bytes]], list[str], dict[str, int]]:
    """Rewrite every exported feedback file without the records users erased (the service's
    ledger) before anything reads them, so neither this stage's outputs nor later ones hold them."""
    erased = erased_record_ids(Path(params.get("erasure_ledger", LEDGER)))
    feedback, purged = purge_feedback_files(Path(params.get("feedback_folder", FEEDBACK_FOLDER)), raw_feedback, erased)
    for name, count in purged.items():
        if count:
            logger.info("erasure ledger: %d record(s) purged from data/01_raw/feedback/%s", count, name)
    return feedback, sorted(erased), purged


def collect_records(
    raw_seed: list[bytes], feedback: dict[str, list[bytes]], erased: list[str], external_sources: dict[str, Any]
) -> tuple[list[Record], list[Record]]:
    """The seed dataset, exported feedback, and every external dataset switched on in the parameters;
    a ledgered record id is dropped from all of them (a copy of feedback may sit in any source)."""
    records, quarantine = parse_jsonl_lines(raw_seed, "data/01_raw/seed.jsonl")
    for name, lines in feedback.items():
        parsed, bad = parse_jsonl_lines(lines, f"data/01_raw/feedback/{name}")
        records += parsed
        quarantine += bad
    external, external_quarantine = read_sources(external_sources or {})
    return without_erased(records + external, set(erased)), quarantine + external_quarantine


def validate(
    records: list[Record], read_quarantine: list[Record], limits: dict[str, Any]
) -> tuple[list[Record], list[Record], dict[str, Any]]:
    """Great Expectations suites over the records; failing rows join the unreadable ones."""
    outcome = validate_records(records, limits)
    return outcome.valid, read_quarantine + outcome.quarantine, outcome.result


def check_quarantine(
    valid: list[Record], quarantine: list[Record], max_fraction: float
) -> int:
    """Stop the stage (after the quarantine file is written) when too much of the input is bad."""
    enforce_quarantine_limit(len(valid), quarantine, max_fraction)
    return len(valid) + len(quarantine)


def build_tokenizer(valid: list[Record], teacher_tokenizer: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The teacher's tokenizer with frequent pieces of the training text appended (ids kept)."""
    tokenizer = Tokenizer.from_dict(teacher_tokenizer)
    tokenizer.adapt(
        (record_text(r) for r in valid),
        min_count=params["adapt_min_count"],
        max_new_tokens=params["adapt_max_new_tokens"],
        max_len=params["adapt_max_len"],
    )
    return tokenizer.to_dict()


def vocabulary_check(
    valid: list[Record], tokenizer: dict[str, Any], min_coverage: float
) -> dict[str, Any]:
    """Coverage, unknown characters and tokens per character, per source."""
    by_source: dict[str, list[str]] = {}
    for record in valid:
        by_source.setdefault(record.get("source", "unknown"), []).append(record_text(record))
    return check_vocabulary(by_source, Tokenizer.from_dict(tokenizer), min_coverage=min_coverage)


def report(
    records_total: int,
    quarantine: list[Record],
    tokenizer: dict[str, Any],
    check: dict[str, Any],
    erased_purged: dict[str, int],
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """The stage's headline figures (DVC metrics) and the same numbers as MLflow metrics."""
    overall = check["overall"]
    summary = {
        "records_total": records_total,
        "erased_records_purged": erased_purged,
        "records_quarantined": len(quarantine),
        "coverage": overall["coverage"],
        "vocab_size": Tokenizer.from_dict(tokenizer).vocab_size,
        "adapted_tokens": len(tokenizer.get("added", [])),
        "tokens_per_char": overall["tokens_per_char"],
        "round_trip_failures": overall["round_trip_failures"],
        "emoji": overall["emoji"],
        "sources": {
            name: {"records": s.get("records", 0), "coverage": s["coverage"], "tokens_per_char": s["tokens_per_char"]}
            for name, s in check["sources"].items()
        },
    }
    return summary, report_metrics(summary)
