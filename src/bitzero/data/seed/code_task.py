"""What every code-task template builds: a solution body plus an independent reference.

A task is written twice on purpose: the solution the model learns from, and a ``reference``
(usually a builtin) that computes the expected test values. ``programs.code_task`` runs the
solution against those values, so a template bug stops generation instead of shipping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import Any

WORDS = (
    "apple", "level", "racecar", "python", "noon", "hello", "world", "kayak", "garden", "river",
    "stats", "orange", "refer", "music", "civic", "window", "rotor", "planet", "madam", "banana",
    "listen", "silent", "stone", "notes", "tiger", "coffee", "moon", "bottle", "letter", "balloon",
)


@dataclass(frozen=True)
class Task:
    name: str
    params: tuple[str, ...]
    does: str  # completes "a function that ..."
    body: str  # the function body, indented four spaces
    make_input: Callable[[Random], tuple[Any, ...]]
    reference: Callable[..., Any]


Builder = Callable[[Random], Task]


def ints(r: Random, low: int, high: int, size: tuple[int, int] = (3, 7)) -> list[int]:
    return [r.randint(low, high) for _ in range(r.randint(*size))]


def sentence(r: Random) -> str:
    return " ".join(r.sample(WORDS, r.randint(2, 6)))
