"""The erasure ledger applied to raw files: what a user erased leaves the files the pipeline reads.

The service appends the erased feedback's record ids to the ledger (ids only; see
``bitzero.data.feedback.record_erasure``). Every exported feedback file is rewritten without
those records before any stage reads it, so no output derived from it can hold them again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from bitzero.data.feedback import ledger_entries
from bitzero.data.records import write_lines

LEDGER = Path("data/01_raw/erasures.jsonl")
FEEDBACK_FOLDER = Path("data/01_raw/feedback")


def latest_erasure(ledger: Path) -> datetime | None:
    """When the last erasure was recorded (timezone-aware), or None when nobody erased anything."""
    return max((datetime.fromisoformat(entry["erased_at"]) for entry in ledger_entries(ledger)), default=None)


def _record_id(line: bytes) -> str | None:
    """The id of the record on a raw line; None for a line that is not a record (it stays, for the
    quarantine to report)."""
    try:
        value = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value.get("id") if isinstance(value, dict) else None


def without_erased_lines(lines: list[bytes], erased: set[str]) -> list[bytes]:
    """The raw lines minus those holding an erased record; every other line is kept byte for byte."""
    return [line for line in lines if _record_id(line) not in erased]


def purge_feedback_files(
    folder: Path, files: Mapping[str, list[bytes]], erased: set[str]
) -> tuple[dict[str, list[bytes]], dict[str, int]]:
    """Each file's lines without the erased records, and how many left each file. A file that lost
    lines is rewritten atomically: a crash leaves the old file whole, and the next run purges again."""
    kept: dict[str, list[bytes]] = {}
    purged: dict[str, int] = {}
    for name, lines in files.items():
        kept[name] = without_erased_lines(lines, erased) if erased else lines
        purged[name] = len(lines) - len(kept[name])
        if purged[name]:
            write_lines(folder / name, kept[name])
    return kept, purged
