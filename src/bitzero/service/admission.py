"""Admission: whether a chat turn gets a place at all, before anything is read or generated.

The server holds ``capacity`` turns at once (generating, up to a model's ``slots`` replies decoded
together, or queued for a slot) and each user at most ``max_per_user`` of them, so one key cannot
take every place; an erasure that began after the request arrived turns it away (its ticket is
older than the user's erasure)."""

from __future__ import annotations

import threading
from collections import Counter

from bitzero.service.chat import ChatError, Lease
from bitzero.service.gate import Erased, UserGates


class Admission:
    """The server's places for chat turns, and each user's share of them."""

    def __init__(self, capacity: int, max_per_user: int) -> None:
        self.capacity = capacity
        self.max_per_user = max_per_user
        self._admitted = 0
        self._admitted_by: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def saturated(self) -> bool:
        """Every place taken: new chats are refused (readiness says so too)."""
        return self._admitted >= self.capacity

    def admit(self, user_id: str, gates: UserGates, ticket: int) -> Lease:
        """A place for one turn, or ChatError 503 when saturated, 429 when the user holds their
        share already (409 when the user was erased after the request arrived). Blocks while the
        user's erasure runs: call it off the loop."""
        with self._lock:
            if self._admitted >= self.capacity:
                raise ChatError("the server is busy with other chats; retry in a few seconds", status=503)
            if self._admitted_by[user_id] >= self.max_per_user:
                raise ChatError(f"you have {self.max_per_user} chats in flight, the most one user may; "
                                "retry when one has finished", status=429)
            self._admitted += 1
            self._admitted_by[user_id] += 1
        try:
            gates.enter(user_id, ticket)
        except Erased:
            self._discharge(user_id)
            raise ChatError("your data was erased while this request waited; send it again", status=409) from None

        def release() -> None:
            gates.leave(user_id)
            self._discharge(user_id)

        return Lease(release)

    def _discharge(self, user_id: str) -> None:
        with self._lock:
            self._admitted -= 1
            self._admitted_by[user_id] -= 1
            if self._admitted_by[user_id] <= 0:
                del self._admitted_by[user_id]
