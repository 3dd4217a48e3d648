"""Per-user ordering of chat turns and erasure, so that an erasure is never undone.

A chat turn writes twice (the user's message before generating, the reply after), and a request
authenticated before an erasure may run after it. Without order, such a turn re-creates the
erased user with settings, a conversation, messages and memories that no key can reach. Here an
erasure waits for the user's turns in flight and then runs alone; a turn that was admitted
before the erasure (it carries the user's epoch from then) is refused afterwards.
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
        self._epochs: Counter[str] = Counter()

    def epoch(self, user: str) -> int:
        """How many erasures of ``user`` have completed: taken when a request is admitted."""
        with self._changed:
            return self._epochs[user]

    def enter(self, user: str, epoch: int) -> None:
        """Start a turn (waits while the user is being erased); raises Erased if it was meanwhile."""
        with self._changed:
            self._changed.wait_for(lambda: user not in self._erasing)
            if self._epochs[user] != epoch:
                raise Erased(user)
            self._turns[user] += 1

    def leave(self, user: str) -> None:
        with self._changed:
            self._turns[user] -= 1
            if self._turns[user] <= 0:
                del self._turns[user]
            self._changed.notify_all()

    @contextmanager
    def erasure(self, user: str) -> Iterator[None]:
        """Run alone for ``user``: after their turns in flight, before any turn admitted earlier."""
        with self._changed:
            self._changed.wait_for(lambda: user not in self._erasing)
            self._erasing.add(user)
            self._changed.wait_for(lambda: not self._turns[user])
        try:
            yield
        finally:
            with self._changed:
                self._epochs[user] += 1
                self._erasing.discard(user)
                self._changed.notify_all()
