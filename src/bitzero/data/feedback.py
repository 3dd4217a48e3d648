"""Feedback into training records (the schema of ``bitzero.data.records``) for the pipeline.

The record's conversation is the full prompt the reply was generated from (the service's system
turn with persona, memories and emotion note, then the turns), ending with an assistant turn:

- thumbs-up: the model's reply, an SFT example;
- thumbs-down with a text: the correction, an SFT example and a preference pair (chosen = the
  correction, rejected = the model's reply, kept in ``feedback.rejected``);
- thumbs-down without a text: the model's reply itself, marked ``corrected: false``: never imitated
  (augmentation leaves it out of SFT), only a one-sided pair that lowers that reply's likelihood.

Records carry no user id: the id is ``feedback-<feedback id>``, which erasure uses to remove them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bitzero.data.records import Record, read_jsonl, write_jsonl

RECORD_PREFIX = "feedback-"


@dataclass(frozen=True)
class PreferencePair:
    """A prompt (the full chat the reply was generated from, ending with the user's turn), the
    reply the user rejected, and the reply they would have wanted (None: not given)."""

    id: str
    prompt: list[dict[str, str]]
    rejected: str
    chosen: str | None


def feedback_record(
    feedback_id: str, prompt: Sequence[Mapping[str, str]], reply: str, score: int, text: str | None
) -> Record | None:
    """One record from one piece of feedback on ``reply``, or None when it holds nothing to learn
    (a neutral score, or a prompt that does not end with the user's turn)."""
    if score == 0:
        return None
    conversation = [{"role": t["role"], "content": t["content"]} for t in prompt if t["content"]]
    if not conversation or conversation[-1]["role"] != "user":
        return None
    correction = text.strip() if score < 0 and text and text.strip() else None
    details: dict[str, object] = {"score": score, "corrected": correction is not None}
    if score < 0:
        details["rejected"] = reply
    return {
        "id": f"{RECORD_PREFIX}{feedback_id}",
        "type": "conversation",
        "source": "feedback",
        "conversation": [*conversation, {"role": "assistant", "content": correction or reply}],
        "feedback": details,
    }


def is_feedback(record: Mapping[str, object]) -> bool:
    return str(record.get("id", "")).startswith(RECORD_PREFIX)


def imitable(record: Mapping[str, object]) -> bool:
    """False for a thumbs-down without a correction: its last turn is the reply the user rejected."""
    details = record.get("feedback")
    return not (isinstance(details, Mapping) and details.get("score", 0) < 0 and not details.get("corrected"))


def preference_pair(record: Mapping[str, Any]) -> PreferencePair | None:
    """The record's pair when it is a thumbs-down (chosen: the correction, or None without one)."""
    details = record.get("feedback")
    if not is_feedback(record) or not isinstance(details, Mapping) or details.get("score", 0) >= 0:
        return None
    *prompt, last = record["conversation"]
    return PreferencePair(id=str(record["id"]), prompt=[dict(t) for t in prompt], rejected=str(details["rejected"]),
                          chosen=last["content"] if details.get("corrected") else None)


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


def ledger_entries(ledger: Path) -> list[dict[str, Any]]:
    """The ledger's entries (``erased_at``, ``record_ids``); none when nobody erased anything."""
    if not ledger.is_file():
        return []
    return [json.loads(line) for line in ledger.read_text(encoding="utf-8").splitlines() if line.strip()]


def erased_record_ids(ledger: Path) -> set[str]:
    """Every record id the ledger says was erased (empty when there is no ledger)."""
    return {record_id for entry in ledger_entries(ledger) for record_id in entry["record_ids"]}


def without_erased(records: Iterable[dict], erased: set[str]) -> list[dict]:
    return [record for record in records if record.get("id") not in erased]
