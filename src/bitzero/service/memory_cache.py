"""Users' memory indexes kept in this process, so a search over 10,000 memories is one matrix
product instead of a database read.

Validity comes from the database, not from this process: every change to a user's memories bumps
``users.memory_version`` in the same transaction, and a cached index is used only while its
version still matches (one primary-key read), so replicas sharing PostgreSQL never see stale
memories. The version is read before the index: a change landing in between makes the entry
look older than it is (reloaded next time), never newer. Last-access times refreshed by other
replicas are the one thing a cached index can lag on (recency is a soft signal).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bitzero.companion.memory import MemoryIndex
from bitzero.service.tables import Memory, User


def bump_memory_version(session: Session, user_id: str) -> None:
    """The one rule that keeps every replica's cache honest: any change to a user's memories bumps
    their version in the same transaction."""
    session.execute(update(User).where(User.id == user_id).values(memory_version=User.memory_version + 1))


def memory_index(session: Session, user_id: str) -> MemoryIndex:
    """A user's valid memories as columns, read without building ORM objects (fast at 10,000);
    it only reads, so it also runs in a read-only session beside the writer."""
    query = select(Memory.id, Memory.category, Memory.slot, Memory.content, Memory.importance,
                   Memory.last_accessed, Memory.embedding).where(
        Memory.user_id == user_id, Memory.invalidated_at.is_(None))
    rows = session.execute(query).all()  # no ORDER BY: sorting 10,000 blobs costs more than it gives
    if not rows:
        return MemoryIndex.build([])
    vectors = np.frombuffer(b"".join(r.embedding for r in rows), dtype=np.float32).reshape(len(rows), -1)
    return MemoryIndex([r.id for r in rows], [r.category for r in rows], [r.slot for r in rows],
                       [r.content for r in rows], np.array([r.importance for r in rows], dtype=np.float64),
                       [r.last_accessed for r in rows], vectors)



class IndexCache:
    def __init__(self, max_users: int = 64) -> None:
        self.max_users = max_users
        self._entries: OrderedDict[str, tuple[int, MemoryIndex]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: Session, user_id: str) -> MemoryIndex:
        """The user's valid memories; ``session`` must not have changed them (its reads are cached)."""
        version = session.scalar(select(User.memory_version).where(User.id == user_id))
        if version is None:
            return MemoryIndex.build([])
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is not None and entry[0] == version:
                self._entries.move_to_end(user_id)
                return entry[1]
        index = memory_index(session, user_id)
        with self._lock:
            self._entries[user_id] = (version, index)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.max_users:
                self._entries.popitem(last=False)
        return index

    def accessed(self, user_id: str, ids: Iterable[str], when: datetime) -> None:
        """Mirror a last-access refresh in the cached index (no version bump: nothing else changed)."""
        wanted = set(ids)
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is None:
                return
            index = entry[1]
            for position, memory_id in enumerate(index.ids):
                if memory_id in wanted:
                    index.last_accessed[position] = when

    def forget(self, user_id: str) -> None:
        with self._lock:
            self._entries.pop(user_id, None)
