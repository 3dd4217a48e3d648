"""Deterministic train/validation split and the domain-weighted training mix.

The split hashes a record's *group* (its original's id), so an augmented variant can never sit in
validation while its original trains: that would leak the answer's structure. Weights follow the
size of each domain, with the companion domains (conversation, emotional) up-weighted, because
they are the product's purpose while math and code dominate by volume.

Users' feedback is never held out and never left to chance: every feedback record trains, once
for sure and again whenever the mix draws it.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Mapping, Sequence

from bitzero.data.feedback import is_feedback
from bitzero.data.records import COMPANION_TYPES, Record

DEFAULT_UPWEIGHT = {domain: 1.5 for domain in COMPANION_TYPES}


def group_id(record: Record) -> str:
    """The id that keeps a record together with its variants: the original's id."""
    return str(record.get("parent_id") or record["id"])


def split_position(key: str, seed: int) -> float:
    """A key's place in [0, 1): a seeded hash, so splits are stable under reordering and re-runs."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_records(
    records: Sequence[Record], validation_fraction: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """(train, validation), decided per group by a seeded hash: stable under reordering and re-runs;
    feedback records always train (a user's correction is there to be learnt, not to score)."""
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    train: list[Record] = []
    validation: list[Record] = []
    for record in records:
        held_out = split_position(group_id(record), seed) < validation_fraction and not is_feedback(record)
        (validation if held_out else train).append(record)
    return train, validation


def domain_weights(
    counts: Mapping[str, int], upweight: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Sampling weight per present domain: its share of records times its multiplier, summing to 1."""
    multipliers = DEFAULT_UPWEIGHT if upweight is None else upweight
    if any(factor < 0 for factor in multipliers.values()):
        raise ValueError(f"up-weights must not be negative: {dict(multipliers)}")
    raw = {domain: n * multipliers.get(domain, 1.0) for domain, n in counts.items() if n > 0}
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(f"no domain has records and a positive weight: {dict(counts)}")
    return {domain: value / total for domain, value in raw.items()}


def sample_mix(
    train_records: Sequence[Record], weights: Mapping[str, float], size: int | None, seed: int,
    always: Sequence[Record] = (),
) -> tuple[list[Record], dict[str, float]]:
    """``always`` once each, then ``size`` minus those draws with replacement from ``train_records``,
    a record's chance being weight[type] / count[type].

    Returns the sample and its realised share per weighted domain. A domain with weight but no
    records cannot be honoured, so it raises rather than silently shifting the mix.
    """
    size = len(train_records) if size is None else size
    if size < 0:
        raise ValueError(f"size must not be negative, got {size}")
    draws = max(size - len(always), 0)
    by_type: dict[str, list[Record]] = {}
    for record in train_records:
        by_type.setdefault(record.get("type", ""), []).append(record)
    domains = [domain for domain, weight in weights.items() if weight > 0]
    missing = [domain for domain in domains if domain not in by_type]
    if missing:
        raise ValueError(f"weighted domains without training records: {missing}")
    if not domains and draws:
        raise ValueError("no domain has a positive weight")
    rng = random.Random(seed)
    chosen = rng.choices(domains, weights=[weights[d] for d in domains], k=draws) if draws else []
    sample = [*always, *(by_type[domain][rng.randrange(len(by_type[domain]))] for domain in chosen)]
    drawn = Counter(chosen) + Counter(record.get("type", "") for record in always)
    realised = {domain: (drawn[domain] / len(sample) if sample else 0.0) for domain in weights}
    return sample, realised
