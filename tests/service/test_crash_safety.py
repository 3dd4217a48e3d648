"""Crash safety: a writer killed with SIGKILL mid-stream loses nothing it had committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select, text

from bitzero.service.db import make_engine, session_factory, transaction
from bitzero.service.tables import Message

WRITER = """
import sys
from bitzero.service.db import make_engine, migrate, session_factory, transaction
from bitzero.service.auth import ensure_user
from bitzero.service.store import UserData
engine = make_engine(sys.argv[1])
migrate(engine)
sessions = session_factory(engine)
with transaction(sessions) as session:
    ensure_user(session, "ana")
    conversation = UserData(session, "ana").conversation(None).id
i = 0
while True:
    with transaction(sessions) as session:
        row = UserData(session, "ana").add_message(conversation, "user", "message %d " % i + "x" * 2000)
        row_id = row.id
    print(row_id, flush=True)  # reported only after the commit returned
    i += 1
"""


def test_sigkill_during_writes_loses_nothing_committed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/crash.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, text=True)
    committed = []
    for line in writer.stdout:
        committed.append(line.strip())
        if len(committed) == 200:
            break
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    committed += [line.strip() for line in writer.stdout.read().splitlines() if line.strip()]
    engine = make_engine(url)
    with transaction(session_factory(engine)) as session:
        assert session.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        stored = set(session.scalars(select(Message.id)))
    engine.dispose()
    assert len(committed) >= 200
    assert set(committed) <= stored
