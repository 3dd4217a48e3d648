"""Task buffers: every verified task by kind, de-duplicated, never holding a held-out task."""

from __future__ import annotations

from collections.abc import Iterable
from random import Random
from typing import Any

from bitzero.selfplay.tasks import KINDS, Task


class TaskBuffer:
    """Grows with every valid proposal; `reserved` keys (the held-out set) are refused."""

    def __init__(self, tasks: Iterable[Task] = (), reserved: Iterable[str] = ()) -> None:
        self.reserved = frozenset(reserved)
        self.by_kind: dict[str, list[Task]] = {kind: [] for kind in KINDS}
        self._keys: set[str] = set()
        for task in tasks:
            self.add(task)

    def add(self, task: Task) -> bool:
        """Add a labelled task; False if it is unlabelled, a duplicate or reserved."""
        if not task.outputs or task.key in self._keys or task.key in self.reserved:
            return False
        self._keys.add(task.key)
        self.by_kind[task.kind].append(task)
        return True

    def __contains__(self, task: Task) -> bool:
        return task.key in self._keys or task.key in self.reserved

    def __len__(self) -> int:
        return len(self._keys)

    def counts(self) -> dict[str, int]:
        return {kind: len(tasks) for kind, tasks in self.by_kind.items()}

    def sample(self, kind: str, k: int, r: Random, level: int | None = None, up_to: bool = False) -> list[Task]:
        """Up to `k` distinct tasks of `kind`: from `level` (or, with `up_to`, from any level up to
        it) when the buffer has enough there, else from all of its tasks of that kind."""
        pool = self.by_kind[kind]
        if level is not None:
            chosen = [t for t in pool if t.difficulty <= level] if up_to else [t for t in pool if t.difficulty == level]
            pool = chosen if len(chosen) >= k else pool
        return r.sample(pool, min(k, len(pool)))

    def records(self) -> list[dict[str, Any]]:
        return [task.to_record() for kind in KINDS for task in self.by_kind[kind]]
