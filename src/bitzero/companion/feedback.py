"""Feedback into training records (the schema of ``bitzero.data.records``) for the augmentation stage.

A thumbs-up keeps the assistant's reply as a target; a thumbs-down with a text takes that text
as the corrected reply; a thumbs-down without one teaches nothing by imitation and is skipped.
Records carry no user id: the id is ``feedback-<feedback id>``, which erasure uses to remove them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
