"""The record contract between stages, and JSON Lines I/O that never loses a line.

A record is one training example::

    {"id": "seed-math-0001", "type": "math", "source": "seed",
     "conversation": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}],
     "answer": "42",                 # math only: the final answer, as text
     "tests": ["assert f(1) == 2"],  # code only: assert statements the solution passes
     "difficulty": 2,                # optional, 1 (easy) .. 5 (hard); used by the curriculum
     "emotion": "joy",               # optional, emotional records
     "parent_id": "..."}             # augmentation variants: the id of the original

Readers turn external formats into records; nothing downstream knows where a record came from
except its ``source`` field.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

RECORD_TYPES = ("conversation", "emotional", "math", "code")
ROLES = ("system", "user", "assistant")
COMPANION_TYPES = ("conversation", "emotional")

Record = dict[str, Any]


def parse_jsonl_lines(
    lines: Iterable[str | bytes], origin: str
) -> tuple[list[Record], list[Record]]:
    """Parse JSON Lines; a line that is not a JSON object is quarantined with its reason, not dropped."""
    records: list[Record] = []
    quarantine: list[Record] = []
    for number, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            raw = line
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                text = raw.decode("utf-8", errors="replace")
                quarantine.append(_quarantined(text, origin, number, [f"invalid UTF-8: {exc.reason}"]))
                continue
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            quarantine.append(_quarantined(line, origin, number, [f"malformed JSON: {exc.msg}"]))
            continue
        if not isinstance(value, dict):
            quarantine.append(
                _quarantined(line, origin, number, [f"not a JSON object: {type(value).__name__}"])
            )
            continue
        records.append(value)
    return records, quarantine


def _quarantined(raw: str, origin: str, line: int, reasons: list[str]) -> Record:
    return {"origin": origin, "line": line, "raw": raw.rstrip("\n")[:2000], "reasons": reasons}


def read_jsonl(path: str | Path) -> tuple[list[Record], list[Record]]:
    """Read a JSON Lines file into (records, quarantined lines)."""
    path = Path(path)
    with path.open("rb") as handle:
        return parse_jsonl_lines(handle, str(path))


def iter_jsonl(path: str | Path) -> Iterator[Record]:
    """Yield the records of a trusted JSON Lines file (a stage output); malformed lines raise."""
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def write_jsonl(path: str | Path, records: Iterable[Record]) -> int:
    """Write records atomically: a crash mid-write leaves the previous file whole."""
    return write_lines(path, (json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records))


def write_lines(path: str | Path, lines: Iterable[bytes]) -> int:
    """Write raw lines atomically (temp file beside it, fsync, rename, fsync of the folder), so a
    crash leaves the old file or the new one, never half of it; returns the number of lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            for line in lines:
                handle.write(line)
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)
    return count


def record_text(record: Record) -> str:
    """All the text of a record, for vocabulary statistics."""
    parts = [turn.get("content", "") for turn in record.get("conversation", []) if isinstance(turn, dict)]
    parts.extend(str(t) for t in record.get("tests", []) or [])
    if record.get("answer") is not None:
        parts.append(str(record["answer"]))
    return "\n".join(p for p in parts if isinstance(p, str))
