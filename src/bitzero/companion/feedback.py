"""Feedback into training records (the schema of ``bitzero.data.records``) for the augmentation stage.

A thumbs-up keeps the assistant's reply as a target; a thumbs-down with a text takes that text
as the corrected reply; a thumbs-down without one teaches nothing by imitation and is skipped.
Records carry no user id: the id is ``feedback-<feedback id>``, which erasure uses to remove them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bitzero.data.records import Record, read_jsonl, write_jsonl

RECORD_PREFIX = "feedback-"


def feedback_record(
    feedback_id: str, turns: Sequence[Mapping[str, str]], reply: str, score: int, text: str | None
) -> Record | None:
    """One record from one piece of feedback, or None when it holds nothing to imitate."""
    if score > 0:
        target = reply
    elif score < 0 and text and text.strip():
        target = text.strip()
    else:
        return None
    conversation = [{"role": t["role"], "content": t["content"]} for t in turns if t["content"]]
    if not conversation or conversation[-1]["role"] != "user":
        return None
    return {
        "id": f"{RECORD_PREFIX}{feedback_id}",
        "type": "conversation",
        "source": "feedback",
        "conversation": [*conversation, {"role": "assistant", "content": target}],
        "feedback": {"score": score, "corrected": score < 0},
    }


def scrub_records(path: Path, feedback_ids: set[str]) -> int:
    """Remove the records of these feedback ids from an exported file (erasure covers copies too)."""
    if not path.is_file() or not feedback_ids:
        return 0
    records, quarantined = read_jsonl(path)
    wanted = {f"{RECORD_PREFIX}{i}" for i in feedback_ids}
    kept = [r for r in records if r.get("id") not in wanted]
    if len(kept) != len(records) or quarantined:
        write_jsonl(path, kept)
    return len(records) - len(kept)


def record_erasure(ledger: Path, feedback_ids: set[str]) -> None:
    """Append the erased feedback's record ids to the erasure ledger, durably (fsync).

    The ledger holds ids only, never content; the pipeline removes these records from every file
    it derived (see `erased_record_ids`), including copies made after this service last ran."""
    if not feedback_ids:
        return
    ledger.parent.mkdir(parents=True, exist_ok=True)
    line = {"erased_at": datetime.now(UTC).isoformat(), "record_ids": sorted(f"{RECORD_PREFIX}{i}" for i in feedback_ids)}
    with ledger.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def erased_record_ids(ledger: Path) -> set[str]:
    """Every record id the ledger says was erased (empty when there is no ledger)."""
    if not ledger.is_file():
        return set()
    lines = ledger.read_text(encoding="utf-8").splitlines()
    return {record_id for line in lines if line.strip() for record_id in json.loads(line)["record_ids"]}


def without_erased(records: Iterable[dict], erased: set[str]) -> list[dict]:
    return [record for record in records if record.get("id") not in erased]
