"""Readers: external datasets (GSM8K, MBPP, Synthetic-Persona-Chat, Topical-Chat) turned into records,
and your own records as they are.

Every reader returns ``(records, quarantine)``. A row that cannot become a record is never dropped
silently: it lands in the quarantine with the reason, shaped like ``records._quarantined`` output
(``origin`` = the file, ``line`` = the JSONL line / the CSV row's first line / the position of the
entry in a JSON file, ``raw`` = the row's text, ``reasons``). A whole file that is not in the
expected format raises ``DatasetFormatError``: that is a wrong path or a changed format, not a bad row.

Ids are stable: ``{source}-{original id}`` where the dataset has ids (MBPP task_id, Topical-Chat
conversation id), else ``{source}-{file stem}-{line or row}``, so the train and test files of one
dataset never collide. ``limit`` caps the number of source rows read (quarantined rows count), so a
limit always reads the same first rows of a file.

Math and code records get the same system turns as the seed dataset, so the model meets one prompt
convention for each task kind whatever the source.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from bitzero.data.records import Record, _quarantined, parse_jsonl_lines
from bitzero.data.seed import CODE_SYSTEM, MATH_SYSTEM
from bitzero.errors import DataError

ReadResult = tuple[list[Record], list[Record]]

_GSM8K_STEP = re.compile(r"<<[^<>]*>>")
# "User 1: hi", "*User 1:* hi", "* User 1: hi *"
_PERSONA_SPEAKER = re.compile(r"^\s*(\*\s*)?User ([12])\s*:\s*\**\s*(.*)$", re.IGNORECASE)
# Stage directions between turns: "[A few minutes later]", "(Later)", "*At the bar*", "* * *".
_NARRATION = re.compile(r"^\s*(\[.*\]|\(.*\)|\*[^*]*\*|[*\s]+)\s*$")
_PERSONA_COLUMNS = ("user 1 personas", "user 2 personas", "Best Generated Conversation")
_TOPICAL_ROLES = {"agent_1": "user", "agent_2": "assistant"}


class DatasetError(DataError):
    """Base class of the readers' errors."""


class DatasetConfigError(DatasetError):
    """The external_sources configuration names an unknown reader, a missing file or a bad limit."""


class DatasetFormatError(DatasetError):
    """A whole file is not in the format its reader expects."""


class _RowError(Exception):
    """One row cannot become a record; the message is the quarantine reason."""


class _Row(NamedTuple):
    line: int
    key: str  # the original id, or the position, used in the record id
    raw: str
    value: Any
    errors: list[str]  # set when the row could not even be parsed


def _collect(
    rows: Iterable[_Row], origin: str, convert: Callable[[str, Any], Record], limit: int | None
) -> ReadResult:
    records: list[Record] = []
    quarantine: list[Record] = []
    for row in itertools.islice(rows, limit):
        reasons = row.errors
        if not reasons:
            try:
                records.append(convert(row.key, row.value))
                continue
            except _RowError as exc:
                reasons = [str(exc)]
        quarantine.append(_quarantined(row.raw, origin, row.line, reasons))
    return records, quarantine


def _jsonl_rows(path: Path) -> Iterator[_Row]:
    """JSON Lines rows keyed by ``{stem}-{line}``; unparsable lines come with their reason."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            values, bad = parse_jsonl_lines([line], str(path))
            raw = line.decode("utf-8", errors="replace")
            if values or bad:  # blank lines are neither
                errors = bad[0]["reasons"] if bad else []
                yield _Row(number, f"{path.stem}-{number}", raw, values[0] if values else None, errors)


def _load_json(path: Path, expected: type) -> Any:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetFormatError(f"{path}: not a JSON file ({exc})") from exc
    if not isinstance(value, expected):
        names: dict[type, str] = {dict: "object", list: "array"}
        raise DatasetFormatError(
            f"{path}: expected a JSON {names[expected]}, found a JSON {names.get(type(value), type(value).__name__)}"
        )
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr)


def _object(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise _RowError(f"row is not an object: {type(row).__name__}")
    return row


def _text(row: dict[str, Any], field: str) -> str:
    """A required non-empty string field of a row."""
    value = row.get(field)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if field not in row else f"{type(value).__name__} {_dumps(value)[:40]}"
        raise _RowError(f"field {field!r} must be a non-empty string, got {got}")
    return value


def _string_list(row: dict[str, Any], field: str, *, required: bool) -> list[str]:
    value = row.get(field)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _RowError(f"field {field!r} must be a list of non-empty strings")
    if required and not value:
        raise _RowError(f"field {field!r} is empty")
    return value


def _turn(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


# ---- GSM8K -------------------------------------------------------------------------------------


def read_gsm8k(path: str | Path, limit: int | None = None) -> ReadResult:
    """GSM8K JSON Lines → math records; the solution keeps its <<expr=value>> steps for augmentation."""
    path = Path(path)
    return _collect(_jsonl_rows(path), str(path), _gsm8k_record, limit)


def _gsm8k_record(key: str, row: Any) -> Record:
    row = _object(row)
    question, solution = _text(row, "question"), _text(row, "answer")
    _, marker, final = solution.rpartition("####")
    answer = final.strip().replace(",", "")
    if not marker or not answer:
        raise _RowError("solution has no final '#### <answer>' line")
    steps = len(_GSM8K_STEP.findall(solution))
    return {
        "id": f"gsm8k-{key}",
        "type": "math",
        "source": "gsm8k",
        "conversation": [
            _turn("system", MATH_SYSTEM),
            _turn("user", question.strip()),
            _turn("assistant", solution.strip()),
        ],
        "answer": answer,
        "difficulty": min(max(steps, 1), 5),
    }


# ---- MBPP --------------------------------------------------------------------------------------


def read_mbpp(path: str | Path, limit: int | None = None) -> ReadResult:
    """MBPP (``mbpp.jsonl``, source "mbpp") or sanitized MBPP (a JSON array, "mbpp-sanitized").

    Tests that need setup (``test_setup_code``, sanitized ``test_imports``) keep it: the setup is
    put in front of each assert, so every test stays runnable on its own after the solution.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        source, rows = "mbpp", _jsonl_rows(path)
    else:
        items = _load_json(path, list)
        source = "mbpp-sanitized"
        rows = (_Row(i, str(i), _dumps(item), item, []) for i, item in enumerate(items, start=1))

    def convert(_key: str, row: Any) -> Record:
        return _mbpp_record(row, source)

    return _collect(rows, str(path), convert, limit)


def _mbpp_record(row: Any, source: str) -> Record:
    row = _object(row)
    task = _text(row, "text" if "text" in row else "prompt")
    code = _text(row, "code").replace("\r\n", "\n").strip() + "\n"
    task_id = row.get("task_id")
    if not isinstance(task_id, int) or isinstance(task_id, bool):
        raise _RowError("field 'task_id' must be an integer")
    asserts = _string_list(row, "test_list", required=True)
    setup_code = row.get("test_setup_code") or ""
    if not isinstance(setup_code, str):
        raise _RowError("field 'test_setup_code' must be a string")
    setup = "\n".join(_string_list(row, "test_imports", required=False) + [setup_code])
    setup = setup.replace("\r\n", "\n").strip()
    tests = [f"{setup}\n{test}" if setup else test for test in asserts]
    code_lines = sum(1 for line in code.splitlines() if line.strip())
    return {
        "id": f"{source}-{task_id}",
        "type": "code",
        "source": source,
        "conversation": [
            _turn("system", CODE_SYSTEM),
            _turn("user", f"{task.strip()}\nYour code should pass this test:\n{asserts[0]}"),
            _turn("assistant", code),
        ],
        "tests": tests,
        # Length of the reference solution is the available proxy for difficulty.
        "difficulty": 1 + sum(code_lines > bound for bound in (3, 6, 10, 15)),
    }


# ---- conversations -----------------------------------------------------------------------------


def _exchange(turns: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """Clean (role, text) turns: empty ones dropped, a speaker's consecutive turns merged, trailing
    user turns trimmed (a record ends on the assistant's reply, the training target)."""
    merged: list[dict[str, str]] = []
    for role, text in turns:
        text = text.strip()
        if not text:
            continue
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"] += "\n" + text
        else:
            merged.append(_turn(role, text))
    while merged and merged[-1]["role"] == "user":
        merged.pop()
    if not any(turn["role"] == "user" for turn in merged):
        raise _RowError("no user turn followed by an assistant reply")
    return merged


def read_persona_chat(path: str | Path, limit: int | None = None) -> ReadResult:
    """Synthetic-Persona-Chat CSV → conversation records: User 1 is the user, User 2 the assistant,
    whose persona becomes the system turn. Stage directions ("[Later]", "* * *") are dropped; other
    unlabelled lines continue the turn above them."""
    path = Path(path)
    stem = path.stem

    def convert(key: str, row: Any) -> Record:
        persona = [line.strip() for line in (row.get("user 2 personas") or "").splitlines()]
        system = [_turn("system", "Your persona:\n" + "\n".join(p for p in persona if p))]
        return {
            "id": f"persona_chat-{key}",
            "type": "conversation",
            "source": "persona_chat",
            "conversation": (system if any(persona) else []) + _persona_turns(row),
        }

    return _collect(_csv_rows(path, stem), str(path), convert, limit)


def _csv_rows(path: Path, stem: str) -> Iterator[_Row]:
    with path.open(encoding="utf-8", newline="") as handle:
        try:
            reader = csv.DictReader(handle)
            missing = [c for c in _PERSONA_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetFormatError(f"{path}: CSV header lacks column(s) {missing}")
            first_line = reader.line_num + 1
            for number, row in enumerate(reader, start=1):
                raw = _dumps({k: v for k, v in row.items() if k is not None})
                yield _Row(first_line, f"{stem}-{number}", raw, row, [])
                first_line = reader.line_num + 1
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DatasetFormatError(f"{path}: unreadable CSV ({exc})") from exc


def _persona_turns(row: dict[str, Any]) -> list[dict[str, str]]:
    text = row.get("Best Generated Conversation")
    if not isinstance(text, str) or not text.strip():
        raise _RowError("column 'Best Generated Conversation' is empty")
    turns: list[list[str]] = []  # [role, text]
    for line in text.splitlines():
        match = _PERSONA_SPEAKER.match(line)
        if match:
            starred, speaker, content = match.groups()
            if starred and content.endswith("*"):  # "* User 1: hi *"
                content = content[:-1]
            turns.append(["user" if speaker == "1" else "assistant", content])
        elif not line.strip() or _NARRATION.match(line):
            continue
        elif turns:
            turns[-1][1] += "\n" + line.strip()
        else:
            raise _RowError("text before the first 'User 1:'/'User 2:' label")
    return _exchange((role, content) for role, content in turns)


def read_topical_chat(path: str | Path, limit: int | None = None) -> ReadResult:
    """Topical-Chat JSON → conversation records: agent_1 is the user, agent_2 the assistant.

    The per-turn sentiment labels are left out: a record carries one ``emotion``, and one label
    for a 20-30 turn chat (mostly "Curious to dive deeper" or "Neutral") would be noise.
    """
    path = Path(path)
    chats = _load_json(path, dict)
    rows = (
        _Row(i, str(cid), _dumps({cid: chat}), chat, [])
        for i, (cid, chat) in enumerate(chats.items(), start=1)
    )

    def convert(key: str, chat: Any) -> Record:
        content = chat.get("content") if isinstance(chat, dict) else None
        if not isinstance(content, list) or not content:
            raise _RowError("field 'content' must be a non-empty list of messages")
        turns = []
        for number, message in enumerate(content, start=1):
            agent = message.get("agent") if isinstance(message, dict) else None
            role = _TOPICAL_ROLES.get(agent) if isinstance(agent, str) else None
            if role is None:
                raise _RowError(f"message {number}: 'agent' must be agent_1 or agent_2")
            if not isinstance(message.get("message"), str):
                raise _RowError(f"message {number}: 'message' must be a string")
            turns.append((role, message["message"]))
        return {
            "id": f"topical_chat-{key}",
            "type": "conversation",
            "source": "topical_chat",
            "conversation": _exchange(turns),
        }

    return _collect(rows, str(path), convert, limit)


# ---- your own records --------------------------------------------------------------------------


def read_records(path: str | Path, limit: int | None = None) -> ReadResult:
    """Your own data, already records (JSON Lines, one object a line), kept as written: ``source``
    defaults to the file's stem and ``id`` to ``{source}-{line}``. The vocabulary stage's
    validation checks the rest (roles, contents, a math answer, code tests) like any record's."""
    path = Path(path)

    def convert(key: str, row: Any) -> Record:
        record = dict(_object(row))
        record.setdefault("source", path.stem)
        record.setdefault("id", f"{record['source']}-{key.rsplit('-', 1)[-1]}")
        return record

    return _collect(_jsonl_rows(path), str(path), convert, limit)


# ---- configuration -----------------------------------------------------------------------------

READERS: dict[str, Callable[..., ReadResult]] = {
    "gsm8k": read_gsm8k,
    "mbpp": read_mbpp,
    "persona_chat": read_persona_chat,
    "topical_chat": read_topical_chat,
    "records": read_records,
}


def read_sources(config: Mapping[str, Any]) -> ReadResult:
    """Read every configured source: ``{reader: {"path", "limit"} or a list of such entries}``.

    The whole configuration is checked before any file is read, so a typo fails fast.
    """
    jobs = [
        (READERS[name], *_checked_entry(name, entry))
        for name, entries in config.items()
        for entry in _entries(name, entries)
    ]
    records: list[Record] = []
    quarantine: list[Record] = []
    for reader, path, limit in jobs:
        read, bad = reader(path, limit=limit)
        records.extend(read)
        quarantine.extend(bad)
    return records, quarantine


def _entries(name: str, entries: Any) -> list[Any]:
    if name not in READERS:
        raise DatasetConfigError(f"unknown reader {name!r}; known readers: {', '.join(READERS)}")
    if isinstance(entries, Mapping):
        return [entries]
    if isinstance(entries, (list, tuple)):
        return list(entries)
    raise DatasetConfigError(
        f"reader {name!r}: expected an entry {{path, limit}} or a list of them, got {type(entries).__name__}"
    )


def _checked_entry(name: str, entry: Any) -> tuple[Path, int | None]:
    if not isinstance(entry, Mapping):
        raise DatasetConfigError(f"reader {name!r}: each entry must be a mapping with 'path' and 'limit'")
    unknown = sorted(set(entry) - {"path", "limit"})
    if unknown:
        raise DatasetConfigError(f"reader {name!r}: unknown key(s) {unknown}; allowed: path, limit")
    raw_path = entry.get("path")
    if not raw_path:
        raise DatasetConfigError(f"reader {name!r}: entry has no 'path'")
    path = Path(raw_path)
    if not path.is_file():
        raise DatasetConfigError(f"reader {name!r}: file not found: {path}")
    limit = entry.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise DatasetConfigError(f"reader {name!r}: 'limit' must be null or an integer >= 0, got {limit!r}")
    return path, limit
