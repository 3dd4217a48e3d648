"""The `bitzero` command: keys, purge, migrate, feedback export; clear errors, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bitzero.cli import main
from bitzero.data.records import read_jsonl
from bitzero.service.auth import ensure_user
from bitzero.service.db import make_engine, migrate, session_factory, transaction
from bitzero.service.store import UserData
from bitzero.service.tables import Message, utcnow


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("BITZERO_DATABASE_URL", url)
    return url


def test_keys_create_list_revoke(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--user", "ana", "--label", "phone"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["user_id"] == "ana" and created["key"].startswith("bz-")
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert created["prefix"] in listing and "active" in listing and created["key"] not in listing
    assert main(["keys", "revoke", created["prefix"]]) == 0
    assert main(["keys", "revoke", created["prefix"]]) == 1
    assert "no active key" in capsys.readouterr().err
    main(["keys", "list", "--user", "ana"])
    assert "revoked" in capsys.readouterr().out


def test_purge_and_feedback_export(database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = make_engine(database)
    migrate(engine)
    with transaction(session_factory(engine)) as session:
        ensure_user(session, "ana")
        data = UserData(session, "ana")
        data.update_privacy({"allow_training": True, "retention_days": 7})
        conversation = data.conversation(None)
        data.add_message(conversation.id, "user", "hi")
        reply = data.add_message(conversation.id, "assistant", "hello!")
        data.add_feedback(reply, 1, None)
        old = data.add_message(conversation.id, "user", "ancient")
        old.created_at = utcnow().replace(year=2000)
    engine.dispose()
    out = tmp_path / "feedback" / "service.jsonl"
    assert main(["feedback", "export", "--out", str(out)]) == 0
    records, _ = read_jsonl(out)
    assert records[0]["conversation"][-1] == {"role": "assistant", "content": "hello!"}
    assert main(["purge"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["purged"]["messages"] == 1
    engine = make_engine(database)
    with transaction(session_factory(engine)) as session:
        assert session.query(Message).count() == 2
    engine.dispose()


def test_errors_are_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BITZERO_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    monkeypatch.setenv("BITZERO_HOST", "0.0.0.0")
    assert main(["serve"]) == 2
    assert "loopback" in capsys.readouterr().err
    monkeypatch.setenv("BITZERO_HOST", "127.0.0.1")
    assert main(["migrate"]) == 0
    with pytest.raises(SystemExit):
        main(["keys"])
