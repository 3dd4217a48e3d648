"""Shared rules for the settings dataclasses (model, training, self-play)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def check_keys(cls: type, values: Mapping[str, Any], what: str) -> None:
    """Settings are typed by people: an unknown key is a typo to report, never to ignore."""
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} config keys: {sorted(unknown)}")
