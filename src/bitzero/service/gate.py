"""Per-user ordering of requests and erasure, so that an erasure is never undone.

Every request that touches a user's rows (a chat turn, a memory written or searched, feedback,
settings) may have been authenticated before an erasure of that user and run after it. Without
order, such a request re-creates the erased user with rows that no key can reach. Here each
request takes a ticket before its key is checked; an erasure waits for the user's requests in
flight and then runs alone; a request whose ticket predates a completed erasure of its user is
refused afterwards (409). Across replicas the database holds the line instead: a keyed user's
row is never re-created by a request (see ``UserData``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from bitzero.errors import ServiceError


class Erased(ServiceError, RuntimeError):
    """The user's data was erased after this request was admitted."""


class UserGates:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._turns: Counter[str] = Counter()
        self._erasing: set[str] = set()
        self._completed = 0  # erasures completed, of any user
        self._erased_at: dict[str, int] = {}  # the user's last erasure, by completion number (an int
        # per erased user for the life of the process: erasures are rare, and forgetting one early
        # would let a late request of that user through)

    def ticket(self) -> int:
        """Taken before the caller's key is checked: any erasure of the caller completed later
        has a larger number, and one completed earlier has already revoked the key."""
        with self._changed:
            return self._completed

    def enter(self, user: str, ticket: int) -> None:
        """Start a request (waits while the user is being erased); raises Erased if they were
        erased after ``ticket`` was taken."""
        with self._changed:
            self._changed.wait_for(lambda: user not in self._erasing)
            if self._erased_at.get(user, -1) > ticket:
                raise Erased(user)
            self._turns[user] += 1

    def leave(self, user: str) -> None:
        with self._changed:
            self._turns[user] -= 1
            if self._turns[user] <= 0:
                del self._turns[user]
            self._changed.notify_all()

    @contextmanager
    def turn(self, user: str, ticket: int) -> Iterator[None]:
        """``enter`` and ``leave`` around one request's work."""
        self.enter(user, ticket)
        try:
            yield
        finally:
            self.leave(user)

    @contextmanager
    def erasure(self, user: str) -> Iterator[None]:
        """Run alone for ``user``: after their requests in flight, before any admitted earlier.
        Only an erasure that completed refuses those: after a failed one they may proceed."""
        with self._changed:
            self._changed.wait_for(lambda: user not in self._erasing)
            self._erasing.add(user)
            self._changed.wait_for(lambda: not self._turns[user])
        completed = False
        try:
            yield
            completed = True
        finally:
            with self._changed:
                if completed:
                    self._completed += 1
                    self._erased_at[user] = self._completed
                self._erasing.discard(user)
                self._changed.notify_all()
