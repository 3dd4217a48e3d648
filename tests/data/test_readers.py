"""Readers: real external files become well-formed records; bad rows are quarantined, never dropped."""

import csv
import itertools
import json
from pathlib import Path

import pytest

from bitzero.data.readers import (
    DatasetConfigError,
    DatasetFormatError,
    read_gsm8k,
    read_mbpp,
    read_persona_chat,
    read_records,
    read_sources,
    read_topical_chat,
)
from bitzero.data.records import RECORD_TYPES, ROLES
from bitzero.data.validation import validate_records

RAW_DATA = Path(__file__).resolve().parents[2] / "data" / "01_raw"  # the vendored open datasets


def raw_file(relative: str) -> Path:
    return RAW_DATA / relative


def assert_well_formed(records: list[dict], source: str, kind: str) -> None:
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    for record in records:
        assert record["id"].startswith(f"{source}-")
        assert record["source"] == source and record["type"] == kind and kind in RECORD_TYPES
        turns = record["conversation"]
        assert all(t["role"] in ROLES and isinstance(t["content"], str) and t["content"] for t in turns)
        assert turns[-1]["role"] == "assistant"
        assert any(t["role"] == "user" for t in turns)


# ---- real files --------------------------------------------------------------------------------


def test_gsm8k_real_file():
    records, quarantine = read_gsm8k(raw_file("gsm8k/train.jsonl"), limit=200)
    assert len(records) == 200 and quarantine == []
    assert_well_formed(records, "gsm8k", "math")
    first = records[0]
    assert first["id"] == "gsm8k-train-1"
    assert first["conversation"][-2]["content"].startswith("Natalia sold clips")
    solution = first["conversation"][-1]["content"]
    assert "<<48/2=24>>" in solution and solution.endswith("#### 72")
    assert first["answer"] == "72" and first["difficulty"] == 2
    assert all(1 <= r["difficulty"] <= 5 for r in records)
    assert all("," not in r["answer"] for r in records)


def test_gsm8k_test_split_ids_do_not_collide_with_train():
    train, _ = read_gsm8k(raw_file("gsm8k/train.jsonl"), limit=5)
    test, _ = read_gsm8k(raw_file("gsm8k/test.jsonl"), limit=5)
    assert not {r["id"] for r in train} & {r["id"] for r in test}


def test_mbpp_full_real_file():
    records, quarantine = read_mbpp(raw_file("mbpp/mbpp.jsonl"), limit=50)
    assert len(records) == 50 and quarantine == []
    assert_well_formed(records, "mbpp", "code")
    first = records[0]
    assert first["id"] == "mbpp-1"
    assert "\r" not in first["conversation"][-1]["content"]
    assert first["tests"][0] in first["conversation"][-2]["content"]  # the example test


def test_mbpp_setup_code_is_kept_and_the_tests_pass():
    records, _ = read_mbpp(raw_file("mbpp/mbpp.jsonl"))
    with_setup = [r for r in records if any("\n" in t for t in r["tests"])]
    assert with_setup, "mbpp.jsonl has tasks with test_setup_code"
    for record in with_setup:
        for test in record["tests"]:
            namespace: dict = {}
            exec(record["conversation"][-1]["content"], namespace)  # the dataset's reference solution
            exec(test, namespace)


def test_mbpp_sanitized_real_file():
    records, quarantine = read_mbpp(raw_file("mbpp/sanitized-mbpp.json"), limit=30)
    assert len(records) == 30 and quarantine == []
    assert_well_formed(records, "mbpp-sanitized", "code")
    assert records[0]["id"] == "mbpp-sanitized-2"
    assert all(r["tests"] for r in records)


def test_persona_chat_real_file():
    records, quarantine = read_persona_chat(
        raw_file("synthetic_persona_chat/Synthetic-Persona-Chat_valid.csv"), limit=40
    )
    assert len(records) + len(quarantine) == 40 and len(records) >= 38
    assert_well_formed(records, "persona_chat", "conversation")
    first = records[0]["conversation"]
    assert first[0]["role"] == "system" and "I can move objects with my mind." in first[0]["content"]
    assert first[1] == {"role": "user", "content": "Hi!"}
    assert first[2] == {"role": "assistant", "content": "Hello!"}
    for record in records:
        roles = [t["role"] for t in record["conversation"][1:]]
        assert all(a != b for a, b in itertools.pairwise(roles))  # speakers alternate
        assert not any(t["content"].startswith("User ") for t in record["conversation"])


def test_topical_chat_real_file():
    records, quarantine = read_topical_chat(raw_file("topical_chat/valid_freq.json"), limit=25)
    assert len(records) == 25 and quarantine == []
    assert_well_formed(records, "topical_chat", "conversation")
    assert records[0]["id"] == "topical_chat-t_a2b769a0-c082-4c26-8d8d-e2c5b8a79d93"
    assert records[0]["conversation"][0] == {"role": "user", "content": "Are you a football fan?"}
    assert all("emotion" not in r for r in records)


# ---- hand-made fixtures with malformed rows ----------------------------------------------------


def test_gsm8k_malformed_rows_are_quarantined_with_line_and_reason(tmp_path):
    path = tmp_path / "gsm.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"}),
                "{not json",
                json.dumps({"question": "no final", "answer": "just prose"}),
                "",
                json.dumps({"question": 5, "answer": "#### 1"}),
                json.dumps({"question": "big", "answer": "<<1=1>><<2=2>><<3=3>><<4=4>><<5=5>><<6=6>>\n#### 1,234"}),
                "[1, 2]",
            ]
        ),
        encoding="utf-8",
    )
    records, quarantine = read_gsm8k(path)
    assert [r["id"] for r in records] == ["gsm8k-gsm-1", "gsm8k-gsm-6"]
    assert records[0]["difficulty"] == 1 and records[1]["difficulty"] == 5
    assert records[1]["answer"] == "1234"
    assert [(q["origin"], q["line"]) for q in quarantine] == [(str(path), 2), (str(path), 3), (str(path), 5), (str(path), 7)]
    assert "malformed JSON" in quarantine[0]["reasons"][0]
    assert "####" in quarantine[1]["reasons"][0]
    assert "'question'" in quarantine[2]["reasons"][0]
    assert "not a JSON object" in quarantine[3]["reasons"][0]
    assert quarantine[0]["raw"] == "{not json"


def test_limit_counts_source_rows(tmp_path):
    path = tmp_path / "gsm.jsonl"
    rows = ["{bad", *(json.dumps({"question": f"q{i}", "answer": f"#### {i}"}) for i in range(5))]
    path.write_text("\n".join(rows), encoding="utf-8")
    records, quarantine = read_gsm8k(path, limit=3)
    assert len(records) + len(quarantine) == 3
    assert read_gsm8k(path, limit=0) == ([], [])


def test_mbpp_malformed_rows(tmp_path):
    good = {"prompt": "Add.", "code": "def add(a, b):\r\n    return a + b", "task_id": 7,
            "test_imports": ["import math"], "test_list": ["assert add(1, 2) == 3"]}
    items = [good, {**good, "task_id": None}, {**good, "test_list": []}, {**good, "code": ""}, "nope"]
    path = tmp_path / "sanitized.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    records, quarantine = read_mbpp(path)
    assert len(records) == 1
    assert records[0]["tests"] == ["import math\nassert add(1, 2) == 3"]
    assert records[0]["conversation"][-1]["content"] == "def add(a, b):\n    return a + b\n"
    assert [q["line"] for q in quarantine] == [2, 3, 4, 5]
    reasons = [q["reasons"][0] for q in quarantine]
    assert "task_id" in reasons[0] and "test_list" in reasons[1] and "'code'" in reasons[2]
    assert "not an object" in reasons[3]


def test_whole_file_in_the_wrong_format_raises(tmp_path):
    path = tmp_path / "chat.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="expected a JSON object, found a JSON array"):
        read_topical_chat(path)
    csv_path = tmp_path / "chat.csv"
    csv_path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="Best Generated Conversation"):
        read_persona_chat(csv_path)


def write_persona_csv(path: Path, rows: list[tuple[str, str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user 1 personas", "user 2 personas", "Best Generated Conversation"])
        writer.writerows(rows)


def test_persona_chat_turns_directions_and_bad_rows(tmp_path):
    path = tmp_path / "persona.csv"
    write_persona_csv(
        path,
        [
            ("I ski.", "I bake.\nI have a cat.",
             "* * *\nUser 1: Hi!\n[A few minutes later]\nUser 1: Anyone?\n*User 2:* Hello!\n"
             "Ingredients:\n1 cup flour\n\n* User 1: Nice *\nUser 2: Thanks\nUser 1: Bye"),
            ("x", "y", "Preamble without a label\nUser 1: hi\nUser 2: yo"),
            ("x", "", "User 1: only the user talks"),
            ("x", "y", ""),
        ],
    )
    records, quarantine = read_persona_chat(path)
    assert len(records) == 1
    assert records[0]["id"] == "persona_chat-persona-1"
    assert records[0]["conversation"] == [
        {"role": "system", "content": "Your persona:\nI bake.\nI have a cat."},
        {"role": "user", "content": "Hi!\nAnyone?"},
        {"role": "assistant", "content": "Hello!\nIngredients:\n1 cup flour"},
        {"role": "user", "content": "Nice"},
        {"role": "assistant", "content": "Thanks"},
    ]
    assert [q["line"] for q in quarantine] == [14, 17, 18]  # the row's first line in the file
    assert "before the first" in quarantine[0]["reasons"][0]
    assert "no user turn followed by an assistant reply" in quarantine[1]["reasons"][0]
    assert "empty" in quarantine[2]["reasons"][0]


def test_topical_chat_bad_conversations(tmp_path):
    def message(agent, text):
        return {"message": text, "agent": agent, "sentiment": "Happy"}

    chats = {
        "c1": {"content": [message("agent_1", "hi"), message("agent_1", "there"), message("agent_2", "hello"),
                           message("agent_1", "bye")]},
        "c2": {"content": [message("agent_3", "who?")]},
        "c3": {"content": "not a list"},
        "c4": {"content": [message("agent_1", 7)]},
        "c5": {"content": [{"agent": ["agent_1"], "message": "list as agent"}]},
    }
    path = tmp_path / "topical.json"
    path.write_text(json.dumps(chats), encoding="utf-8")
    records, quarantine = read_topical_chat(path)
    assert records == [
        {"id": "topical_chat-c1", "type": "conversation", "source": "topical_chat",
         "conversation": [{"role": "user", "content": "hi\nthere"}, {"role": "assistant", "content": "hello"}]}
    ]
    assert [q["line"] for q in quarantine] == [2, 3, 4, 5]
    assert "agent_1 or agent_2" in quarantine[0]["reasons"][0]
    assert "'content'" in quarantine[1]["reasons"][0]
    assert "'message' must be a string" in quarantine[2]["reasons"][0]
    assert "agent_1 or agent_2" in quarantine[3]["reasons"][0]
    assert '"c2"' in quarantine[0]["raw"]


# ---- read_sources ------------------------------------------------------------------------------


def test_your_own_records_are_read_as_written_and_validated_like_any(tmp_path):
    turns = [{"role": "user", "content": "I passed my exam!"}, {"role": "assistant", "content": "Congratulations!"}]
    rows = [
        json.dumps({"type": "conversation", "conversation": turns}),
        json.dumps({"id": "mine-7", "type": "emotional", "source": "diary", "emotion": "joy", "conversation": turns}),
        json.dumps({"type": "math", "conversation": turns}),  # no answer: validation's to catch
        "[1, 2]",
        "{not json",
    ]
    path = tmp_path / "family_chats.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    records, quarantine = read_sources({"records": {"path": str(path), "limit": None}})
    assert [(r["id"], r["source"]) for r in records] == [
        ("family_chats-1", "family_chats"), ("mine-7", "diary"), ("family_chats-3", "family_chats")]
    assert [q["line"] for q in quarantine] == [4, 5] and "not a JSON object" in quarantine[0]["reasons"][0]
    checked = validate_records(records, {"max_turns": 64, "max_chars_per_turn": 8000, "max_chars": 20000})
    assert [r["id"] for r in checked.valid] == ["family_chats-1", "mine-7"]
    assert len(checked.quarantine) == 1 and "answer" in json.dumps(checked.quarantine[0])
    assert read_records(path, limit=1)[0][0]["id"] == "family_chats-1"


def test_read_sources_combines_entries(tmp_path):
    gsm = tmp_path / "g.jsonl"
    gsm.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n{bad\n", encoding="utf-8")
    chats = tmp_path / "t.json"
    chats.write_text(json.dumps({"c": {"content": [{"agent": "agent_1", "message": "a"},
                                                    {"agent": "agent_2", "message": "b"}]}}))
    records, quarantine = read_sources(
        {"gsm8k": [{"path": str(gsm), "limit": None}, {"path": gsm, "limit": 1}],
         "topical_chat": {"path": str(chats)}}
    )
    assert [r["id"] for r in records] == ["gsm8k-g-1", "gsm8k-g-1", "topical_chat-c"]
    assert len(quarantine) == 1
    assert read_sources({}) == ([], [])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"gsm9k": {"path": "x"}}, "unknown reader 'gsm9k'; known readers: gsm8k, mbpp"),
        ({"mbpp": {"limit": 3}}, "reader 'mbpp': entry has no 'path'"),
        ({"mbpp": {"path": "/no/such/file.jsonl"}}, "file not found: /no/such/file.jsonl"),
        ({"mbpp": {"path": "PATH", "limt": 3}}, "unknown key"),
        ({"mbpp": {"path": "PATH", "limit": -1}}, "'limit' must be null or an integer"),
        ({"mbpp": "PATH"}, "expected an entry"),
        ({"mbpp": ["PATH"]}, "each entry must be a mapping"),
    ],
)
def test_read_sources_config_errors(tmp_path, config, message):
    existing = tmp_path / "exists.jsonl"
    existing.write_text("", encoding="utf-8")
    config = json.loads(json.dumps(config).replace("PATH", str(existing)))
    with pytest.raises(DatasetConfigError, match=message.replace("(", r"\(")):
        read_sources(config)


def test_read_sources_checks_all_entries_before_reading(tmp_path):
    good = tmp_path / "g.jsonl"
    good.write_text(json.dumps({"question": "q", "answer": "#### 1"}), encoding="utf-8")
    with pytest.raises(DatasetConfigError, match="unknown reader"):
        read_sources({"gsm8k": {"path": str(good)}, "nope": {"path": str(good)}})
