"""Record validation with Great Expectations: failing records go to quarantine with their reasons.

A raw record may be any JSON value (wrong types, missing fields), so each one is first flattened
into one row of derived, well-typed columns (``record_row`` never raises); the expectation suite
then runs once over the whole DataFrame, and each expectation's ``unexpected_index_list`` names the
failing rows. Conditional rules (math needs an answer, code needs tests) use GX row conditions.

Great Expectations 1.24 sends no usage statistics (its analytics code is gone; only the
``analytics_enabled`` setting remains); it is still switched off twice here — the
``GX_ANALYTICS_ENABLED`` environment variable and the context's ``analytics_enabled`` — so a GX
upgrade that brings analytics back stays quiet. GX is imported on first use: the import takes seconds.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bitzero.data.records import RECORD_TYPES, ROLES, Record
from bitzero.errors import DataError

MAX_QUARANTINED_RECORD_CHARS = 2000
LIMIT_KEYS = ("max_turns", "max_chars_per_turn", "max_chars")
_OPTIONAL_STRINGS = ("source", "emotion", "parent_id")


class RecordValidationError(DataError, RuntimeError):
    """The suite itself failed to run (a bug or a GX incompatibility, not bad data)."""


class TooManyInvalidRecords(DataError, ValueError):
    """More of the input ended in quarantine than the configured fraction allows."""


@dataclass(frozen=True)
class Check:
    """One expectation of the suite, with the sentence a person reads when a record fails it."""

    expectation: str  # class name in gx.expectations
    column: str
    explanation: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    row_condition: str | None = None
    shows: str | None = None  # the column whose value the quarantine row quotes (default: column)

    @property
    def name(self) -> str:
        """GX's snake-case name, e.g. expect_column_values_to_be_in_set."""
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in self.expectation).lstrip("_")

    @property
    def reason(self) -> str:
        where = f" where {self.row_condition}" if self.row_condition else ""
        return f"{self.name}({self.column}{where}): {self.explanation}"


@dataclass
class ValidationOutcome:
    """Valid records (input order kept), one quarantine row per failing record, a JSON summary."""

    valid: list[Record]
    quarantine: list[Record]
    result: dict[str, Any]
    fraction_failed: float


def record_checks(limits: Mapping[str, Any]) -> list[Check]:
    """The expectation suite for records, sized by the stage's limits."""
    missing = [key for key in LIMIT_KEYS if key not in limits]
    if missing:
        raise ValueError(f"validation limits lack {missing}; expected keys: {', '.join(LIMIT_KEYS)}")
    max_turns, per_turn, total = (int(limits[key]) for key in LIMIT_KEYS)

    def in_set(column: str, values: list[Any], explanation: str, **extra: Any) -> Check:
        return Check("ExpectColumnValuesToBeInSet", column, explanation, {"value_set": values}, **extra)

    def between(column: str, explanation: str, **bounds: int) -> Check:
        return Check("ExpectColumnValuesToBeBetween", column, explanation, bounds)

    return [
        Check("ExpectColumnValuesToNotBeNull", "id", "id must be a non-empty string", shows="raw_id"),
        in_set("duplicate_id", [False], "id already used by an earlier record", shows="id"),
        in_set("type", list(RECORD_TYPES), f"type must be one of {', '.join(RECORD_TYPES)}"),
        in_set("conversation_is_list", [True], "conversation must be a list of turns",
               shows="conversation_kind"),
        between("n_turns", f"a conversation has 1 to {max_turns} turns", min_value=1, max_value=max_turns),
        in_set("turns_are_objects", [True], "every turn must be an object {role, content}"),
        in_set("unknown_roles", [""], f"every role must be one of {', '.join(ROLES)}"),
        in_set("non_string_contents", [""], "every turn's content must be a string"),
        between("min_content_chars", "every turn must have text (empty content)", min_value=1),
        between("max_content_chars", f"a turn has at most {per_turn} characters", max_value=per_turn),
        between("total_chars", f"a record has at most {total} characters", max_value=total),
        in_set("has_user_turn", [True], "a conversation needs a user turn"),
        in_set("last_role", ["assistant"], "a conversation ends with the assistant's reply"),
        in_set("answer_ok", [True], "a math record needs a non-empty answer (string or number)",
               row_condition='type == "math"', shows="answer_shown"),
        in_set("tests_ok", [True], "a code record needs a non-empty list of test strings",
               row_condition='type == "code"', shows="tests_shown"),
        in_set("bad_optional_fields", [""], "optional fields have the wrong type "
               "(difficulty: integer 1..5; source, emotion, parent_id: strings)"),
    ]


def record_row(record: Any) -> dict[str, Any]:
    """The derived columns of one raw record; any JSON value is accepted. None means "not applicable"
    (GX column-value expectations skip nulls), so one defect is reported once, by the right check."""
    fields = record if isinstance(record, dict) else {}
    raw_id, kind, turns = fields.get("id"), fields.get("type"), fields.get("conversation")
    row: dict[str, Any] = {
        "id": raw_id if isinstance(raw_id, str) and raw_id.strip() else None,
        "raw_id": _shown(fields, "id"),
        "type": kind if isinstance(kind, str) else f"<{_kind(kind, 'type' in fields)}>",
        "conversation_is_list": isinstance(turns, list),
        "conversation_kind": _kind(turns, "conversation" in fields),
        "n_turns": None, "turns_are_objects": None, "unknown_roles": None, "non_string_contents": None,
        "min_content_chars": None, "max_content_chars": None, "has_user_turn": None, "last_role": None,
        "answer_ok": _answer_ok(fields.get("answer")),
        "answer_shown": _shown(fields, "answer"),
        "tests_ok": _tests_ok(fields.get("tests")),
        "tests_shown": _shown(fields, "tests"),
        "bad_optional_fields": ", ".join(_bad_optional_fields(fields)),
    }
    text_chars = _answer_chars(fields.get("answer")) + _tests_chars(fields.get("tests"))
    if isinstance(turns, list):
        dicts = [t for t in turns if isinstance(t, dict)]
        roles = [t.get("role") for t in dicts]
        contents = [t.get("content") for t in dicts]
        lengths = [len(c) for c in contents if isinstance(c, str)]
        text_chars += sum(lengths)
        well_formed = bool(turns) and len(dicts) == len(turns) and all(r in ROLES for r in roles)
        row.update(
            n_turns=len(turns),
            turns_are_objects=len(dicts) == len(turns),
            unknown_roles=", ".join(
                sorted({_short(json.dumps(r, default=repr)) for r in roles if r not in ROLES})
            ),
            non_string_contents=", ".join(
                f"turn {i}: {_kind(t.get('content'), 'content' in t)}"
                for i, t in enumerate(turns, start=1)
                if isinstance(t, dict) and not isinstance(t.get("content"), str)
            ),
            min_content_chars=min(lengths, default=None),
            max_content_chars=max(lengths, default=None),
            # The turn order is judged only on well-formed turns: other checks report malformed ones.
            has_user_turn="user" in roles if well_formed else None,
            last_role=roles[-1] if well_formed else None,
        )
    row["total_chars"] = text_chars
    return row


def _kind(value: Any, present: bool = True) -> str:
    return type(value).__name__ if present else "missing"


def _shown(fields: dict[str, Any], name: str) -> str:
    """A field's value as short text for quarantine rows ("<missing>" when absent)."""
    return _short(fields[name]) if name in fields else "<missing>"


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= limit else text[:limit] + "…"


def _answer_ok(answer: Any) -> bool:
    if isinstance(answer, str):
        return bool(answer.strip())
    return isinstance(answer, (int, float)) and not isinstance(answer, bool) and math.isfinite(answer)


def _tests_ok(tests: Any) -> bool:
    return isinstance(tests, list) and bool(tests) and all(isinstance(t, str) and t.strip() for t in tests)


def _answer_chars(answer: Any) -> int:
    return len(answer) if isinstance(answer, str) else 0


def _tests_chars(tests: Any) -> int:
    return sum(len(t) for t in tests if isinstance(t, str)) if isinstance(tests, list) else 0


def _bad_optional_fields(fields: dict[str, Any]) -> list[str]:
    bad = [name for name in _OPTIONAL_STRINGS if name in fields and not isinstance(fields[name], str)]
    difficulty = fields.get("difficulty")
    if "difficulty" in fields and not (
        isinstance(difficulty, int) and not isinstance(difficulty, bool) and 1 <= difficulty <= 5
    ):
        bad.append("difficulty")
    return bad


def validate_records(records: Sequence[Any], limits: Mapping[str, Any]) -> ValidationOutcome:
    """Run the suite once over all records; split them into valid ones and quarantine rows."""
    suite = record_checks(limits)
    rows = [record_row(record) for record in records]
    seen: set[str] = set()
    for row in rows:  # the first record with an id keeps it; later ones are the duplicates
        row["duplicate_id"] = row["id"] in seen if row["id"] is not None else None
        if row["id"] is not None:
            seen.add(row["id"])
    columns = list(record_row({})) + ["duplicate_id"]
    frame = pd.DataFrame.from_records(rows, columns=columns, index=pd.RangeIndex(len(rows)))
    results = _run_suite(frame, suite)

    failures: dict[int, list[Check]] = {}
    for check, result in zip(suite, results, strict=True):
        for index in result["unexpected_index_list"]:
            failures.setdefault(int(index), []).append(check)
    valid = [record for i, record in enumerate(records) if i not in failures]
    quarantine = [_quarantine_row(records[i], rows[i], failed) for i, failed in sorted(failures.items())]
    fraction = len(failures) / len(records) if records else 0.0
    summary = {
        "success": not failures,
        "records": len(records),
        "valid": len(valid),
        "quarantined": len(quarantine),
        "fraction_failed": fraction,
        "expectations": [
            {
                "expectation": check.name,
                "column": check.column,
                "row_condition": check.row_condition,
                "explanation": check.explanation,
                "success": result["success"],
                "element_count": result["element_count"],
                "unexpected_count": result["unexpected_count"],
            }
            for check, result in zip(suite, results, strict=True)
        ],
    }
    return ValidationOutcome(valid, quarantine, summary, fraction)


def _quarantine_row(record: Any, row: dict[str, Any], failed: list[Check]) -> Record:
    text = json.dumps(record, ensure_ascii=False, default=repr)
    shown = json.loads(text) if len(text) <= MAX_QUARANTINED_RECORD_CHARS else (
        text[:MAX_QUARANTINED_RECORD_CHARS] + f"… (truncated, {len(text)} characters)"
    )
    return {
        "origin": "validation",
        "id": row["id"] if row["id"] is not None else row["raw_id"],
        "record": shown,
        "reasons": [check.reason for check in failed],
        "values": {check.shows or check.column: row[check.shows or check.column] for check in failed},
    }


def _run_suite(frame: pd.DataFrame, suite: list[Check]) -> list[dict[str, Any]]:
    """One ephemeral GX context, one validation run; per expectation: success, counts, failing rows."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        config = DataContextConfig(
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
            store_backend_defaults=InMemoryStoreBackendDefaults(),
        )
        context = gx.get_context(mode="ephemeral", project_config=config)
        batch = (
            context.data_sources.add_pandas("records")
            .add_dataframe_asset("records")
            .add_batch_definition_whole_dataframe("all records")
        )
        expectation_suite = context.suites.add(gx.ExpectationSuite(name="records"))
        for check in suite:
            condition = {"row_condition": check.row_condition, "condition_parser": "pandas"}
            expectation_class = getattr(gx.expectations, check.expectation)
            expectation_suite.add_expectation(
                expectation_class(
                    column=check.column, **check.kwargs, **(condition if check.row_condition else {})
                )
            )
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name="records", data=batch, suite=expectation_suite)
        )
        outcome = definition.run(
            batch_parameters={"dataframe": frame}, result_format={"result_format": "COMPLETE"}
        )
    results = []
    for check, result in zip(suite, outcome.results, strict=True):
        details = result.result
        error = _exception_message(result.exception_info or {})
        if error is not None or "unexpected_index_list" not in details:
            raise RecordValidationError(f"expectation {check.reason!r} could not run: {error}")
        results.append(
            {
                "success": bool(result.success),
                "element_count": int(details.get("element_count", 0)),
                "unexpected_count": int(details.get("unexpected_count", 0)),
                "unexpected_index_list": list(details.get("unexpected_index_list", [])),
            }
        )
    return results


def _exception_message(info: Mapping[str, Any]) -> str | None:
    """GX reports an expectation's error either directly or keyed by the metric that raised it."""
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, Mapping) and (value.get("raised_exception") or value.get("exception_message")):
            return str(value.get("exception_message"))
    return None


def enforce_quarantine_limit(valid_count: int, quarantine: Sequence[Record], max_fraction: float) -> None:
    """Raise TooManyInvalidRecords when quarantined / (valid + quarantined) exceeds max_fraction."""
    if not 0.0 <= max_fraction <= 1.0:
        raise ValueError(f"max_fraction must be between 0 and 1, got {max_fraction}")
    total = valid_count + len(quarantine)
    if not total or len(quarantine) / total <= max_fraction:
        return
    reasons = Counter(reason for row in quarantine for reason in row.get("reasons", []))
    common = "; ".join(f"{count} × {reason}" for reason, count in reasons.most_common(5))
    raise TooManyInvalidRecords(
        f"{len(quarantine)} of {total} records ({len(quarantine) / total:.1%}) are quarantined, "
        f"more than the allowed {max_fraction:.1%}. Most common reasons: {common}"
    )


def check_quarantine_fraction(outcome: ValidationOutcome, max_fraction: float) -> None:
    """The quarantine limit for one validation outcome (see enforce_quarantine_limit)."""
    enforce_quarantine_limit(len(outcome.valid), outcome.quarantine, max_fraction)
