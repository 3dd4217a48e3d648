"""Record validation with Great Expectations: good records pass, each kind of bad record is
quarantined with the reason that names it, and too much bad input stops the stage."""

import json
import socket
from pathlib import Path

import pytest

from bitzero.data.records import read_jsonl
from bitzero.data.validation import (
    TooManyInvalidRecords,
    ValidationOutcome,
    check_quarantine_fraction,
    enforce_quarantine_limit,
    record_row,
    validate_records,
)

LIMITS = {"max_turns": 8, "max_chars_per_turn": 500, "max_chars": 1200}
SEED = Path(__file__).resolve().parents[2] / "data" / "01_raw" / "seed.jsonl"


def chat(rid: str, kind: str = "conversation", **extra) -> dict:
    turns = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello!"}]
    return {"id": rid, "type": kind, "source": "test", "conversation": turns, **extra}


def with_turns(rid: str, turns: list, kind: str = "conversation") -> dict:
    return {**chat(rid, kind), "conversation": turns}


GOOD = [
    chat("good-chat"),
    chat("good-emotional", "emotional", emotion="joy"),
    chat("good-math", "math", answer="42", difficulty=3),
    chat("good-math-number", "math", answer=7.5),
    chat("good-code", "code", tests=["assert f() == 1"], parent_id="good-x"),
    with_turns("good-no-system", [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]),
]

# id -> (bad record, substring of the reason it must be quarantined with)
BAD = {
    "bad-role": (with_turns("bad-role", [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}]),
                 "unknown_roles"),
    "bad-empty": (with_turns("bad-empty", [{"role": "user", "content": ""}, {"role": "assistant", "content": "y"}]),
                  "min_content_chars): every turn must have text"),
    "bad-long-turn": (with_turns("bad-long-turn", [{"role": "user", "content": "u"},
                                                   {"role": "assistant", "content": "x" * 501}]),
                      "max_content_chars): a turn has at most 500 characters"),
    "bad-huge": (with_turns("bad-huge", [{"role": "user", "content": "u" * 400},
                                         {"role": "assistant", "content": "a" * 400}] * 2),
                 "total_chars): a record has at most 1200 characters"),
    "bad-too-many-turns": (with_turns("bad-too-many-turns", [{"role": "user", "content": "u"},
                                                             {"role": "assistant", "content": "a"}] * 5),
                           "n_turns): a conversation has 1 to 8 turns"),
    "bad-content-list": (with_turns("bad-content-list", [{"role": "user", "content": ["x"]},
                                                         {"role": "assistant", "content": "y"}]),
                         "non_string_contents"),
    "bad-content-number": (with_turns("bad-content-number", [{"role": "user", "content": "x"},
                                                             {"role": "assistant", "content": 5}]),
                           "non_string_contents"),
    "bad-turn-not-object": (with_turns("bad-turn-not-object", ["hi", {"role": "assistant", "content": "y"}]),
                            "turns_are_objects"),
    "bad-conversation-str": (with_turns("bad-conversation-str", "hello"), "conversation_is_list"),
    "bad-no-turns": (with_turns("bad-no-turns", []), "n_turns"),
    "bad-no-user": (with_turns("bad-no-user", [{"role": "assistant", "content": "y"}]), "has_user_turn"),
    "bad-ends-with-user": (with_turns("bad-ends-with-user", [{"role": "user", "content": "x"}]), "last_role"),
    "bad-math-no-answer": (chat("bad-math-no-answer", "math"), 'answer_ok where type == "math"'),
    "bad-math-empty-answer": (chat("bad-math-empty-answer", "math", answer="  "), "answer_ok"),
    "bad-math-bool-answer": (chat("bad-math-bool-answer", "math", answer=True), "answer_ok"),
    "bad-code-no-tests": (chat("bad-code-no-tests", "code"), 'tests_ok where type == "code"'),
    "bad-code-tests-str": (chat("bad-code-tests-str", "code", tests="assert True"), "tests_ok"),
    "bad-code-tests-empty": (chat("bad-code-tests-empty", "code", tests=[]), "tests_ok"),
    "bad-type": (chat("bad-type", "poem"), "type): type must be one of conversation, emotional, math, code"),
    "bad-type-number": (chat("bad-type-number", 3), "type):"),
    "bad-difficulty": (chat("bad-difficulty", "math", answer="1", difficulty="hard"), "bad_optional_fields"),
    "bad-source": (chat("bad-source", source=["x"]), "bad_optional_fields"),
    "good-chat": (chat("good-chat"), "duplicate_id): id already used by an earlier record"),
}
MISSING_ID = {k: v for k, v in chat("x").items() if k != "id"}
NUMBER_ID = chat(17)


@pytest.fixture(scope="module")
def outcome() -> ValidationOutcome:
    """One validation run over everything (GX takes seconds to import)."""
    bad = [record for record, _ in BAD.values()]
    return validate_records(GOOD + bad + [MISSING_ID, NUMBER_ID, "not an object"], LIMITS)


def test_good_records_pass_and_keep_their_order(outcome):
    assert outcome.valid == GOOD


@pytest.mark.parametrize("rid", sorted(BAD))
def test_each_bad_kind_is_quarantined_with_its_reason(outcome, rid):
    expected = BAD[rid][1]
    rows = [q for q in outcome.quarantine if q["id"] == rid]
    assert len(rows) == 1, f"{rid} should be quarantined once"
    assert rows[0]["origin"] == "validation"
    assert any(expected in reason for reason in rows[0]["reasons"]), rows[0]["reasons"]


def test_one_defect_gives_one_reason(outcome):
    row = next(q for q in outcome.quarantine if q["id"] == "bad-role")
    assert len(row["reasons"]) == 1 and row["values"] == {"unknown_roles": '"bot"'}
    row = next(q for q in outcome.quarantine if q["id"] == "bad-content-number")
    assert row["values"] == {"non_string_contents": "turn 2: int"}


def test_duplicate_id_keeps_the_first_record(outcome):
    assert GOOD[0] in outcome.valid
    duplicate = [q for q in outcome.quarantine if q["id"] == "good-chat"]
    assert len(duplicate) == 1 and duplicate[0]["record"] == BAD["good-chat"][0]


def test_missing_or_non_string_id_and_non_objects(outcome):
    by_record = {json.dumps(q["record"]): q for q in outcome.quarantine}
    for record in (MISSING_ID, NUMBER_ID, "not an object"):
        row = by_record[json.dumps(record)]
        assert any(r.startswith("expect_column_values_to_not_be_null(id)") for r in row["reasons"])
    assert by_record[json.dumps(NUMBER_ID)]["id"] == "17"


def test_huge_record_is_truncated_in_quarantine():
    huge = with_turns("huge", [{"role": "user", "content": "u" * 100_000}, {"role": "assistant", "content": "a"}])
    result = validate_records([huge], LIMITS)
    row = result.quarantine[0]
    assert isinstance(row["record"], str) and len(row["record"]) < 2100
    assert "truncated" in row["record"] and row["values"]["max_content_chars"] == 100_000
    assert result.fraction_failed == 1.0 and result.valid == []


def test_result_summary_is_json_and_counts_failures(outcome):
    summary = json.loads(json.dumps(outcome.result))
    total = len(GOOD) + len(BAD) + 3
    assert summary["records"] == total and summary["valid"] == len(GOOD)
    assert summary["quarantined"] == total - len(GOOD) and not summary["success"]
    assert outcome.fraction_failed == pytest.approx((total - len(GOOD)) / total)
    by_column = {e["column"]: e for e in summary["expectations"]}
    assert by_column["tests_ok"]["unexpected_count"] == 3 and not by_column["tests_ok"]["success"]
    assert by_column["tests_ok"]["row_condition"] == 'type == "code"'
    assert by_column["answer_ok"]["unexpected_count"] == 3


def test_seed_dataset_passes_with_the_stage_limits_and_no_network(monkeypatch):
    """The project's own records are valid, and validating opens no network connection."""
    if not SEED.is_file():
        pytest.skip("seed dataset not generated")
    records, unreadable = read_jsonl(SEED)

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    result = validate_records(records, {"max_turns": 64, "max_chars_per_turn": 8000, "max_chars": 20000})
    assert unreadable == [] and result.quarantine == [] and len(result.valid) == len(records)


def test_no_records():
    result = validate_records([], LIMITS)
    assert result.valid == [] and result.quarantine == [] and result.fraction_failed == 0.0


def test_limits_must_be_complete():
    with pytest.raises(ValueError, match="max_chars_per_turn"):
        validate_records([], {"max_turns": 3, "max_chars": 10})


@pytest.mark.parametrize(
    "junk",
    [None, 3, "s", [], {}, {"id": None, "type": None, "conversation": None},
     {"conversation": [None, 1, [], {"role": {"a": 1}, "content": {"b": 2}}]},
     {"answer": float("nan"), "tests": 5, "difficulty": True, "conversation": [{}]}],
)
def test_flattening_never_raises(junk):
    row = record_row(junk)
    assert row["id"] is None and isinstance(row["total_chars"], int)


def test_fraction_check_raises_with_counts_and_reasons(outcome):
    with pytest.raises(TooManyInvalidRecords) as error:
        check_quarantine_fraction(outcome, 0.5)
    message = str(error.value)
    total = len(GOOD) + len(BAD) + 3
    assert f"{total - len(GOOD)} of {total} records" in message and "allowed 50.0%" in message
    assert "Most common reasons: 3 × " in message
    assert "3 × expect_column_values_to_be_in_set(tests_ok where type == \"code\")" in message
    check_quarantine_fraction(outcome, 0.9)  # within the limit: no error


def test_quarantine_limit_counts_unreadable_rows_too():
    unreadable = [{"origin": "f.jsonl", "line": 1, "raw": "{", "reasons": ["malformed JSON"]}]
    enforce_quarantine_limit(19, unreadable, 0.05)
    with pytest.raises(TooManyInvalidRecords, match=r"1 of 10 records \(10.0%\).*1 × malformed JSON"):
        enforce_quarantine_limit(9, unreadable, 0.05)
    with pytest.raises(ValueError, match="between 0 and 1"):
        enforce_quarantine_limit(9, unreadable, 5)


def test_batch_without_any_turn_list_still_validates():
    """Columns that are null for every row (no record has turns) must not break the suite."""
    result = validate_records([{"id": "a", "type": "conversation", "conversation": "x"}, 5], LIMITS)
    assert [q["reasons"] for q in result.quarantine][0] == [
        "expect_column_values_to_be_in_set(conversation_is_list): conversation must be a list of turns"
    ]
    assert len(result.quarantine) == 2 and result.valid == []
