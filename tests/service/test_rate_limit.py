"""The two rate-limit stores agree: a burst up to the limit, then refills at the limit's rate; in
the shared store a replica whose clock is behind the last writer's changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitzero.service.db import make_engine, migrate, session_factory
from bitzero.service.limits import DatabaseRateLimiter, MemoryRateLimiter, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "database"])
def limiter(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    if request.param == "memory":
        return MemoryRateLimiter(3, clock=clock), clock
    engine = make_engine(f"sqlite:///{tmp_path}/limits.db")
    migrate(engine)
    return DatabaseRateLimiter(3, session_factory(engine), clock=clock), clock


def test_burst_refill_and_a_clock_behind(limiter: tuple[RateLimiter, Clock]) -> None:
    bucket, clock = limiter
    assert [bucket.acquire("ana") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire("ana") == pytest.approx(20.0)  # 3 a minute: one token every 20 s
    assert bucket.acquire("ana") == pytest.approx(20.0) and bucket.acquire("bob") == 0.0  # refused: nothing spent
    clock.now += 10
    assert bucket.acquire("ana") == pytest.approx(10.0)
    clock.now += 10
    assert bucket.acquire("ana") == 0.0 and bucket.acquire("ana") > 0
    if isinstance(bucket, DatabaseRateLimiter):
        clock.now -= 30  # another replica's clock, behind: no refill, and the bucket keeps the later time
        assert bucket.acquire("ana") == pytest.approx(20.0)
        clock.now += 30
        assert bucket.acquire("ana") == pytest.approx(20.0)
    clock.now += 3600
    assert [bucket.acquire("ana") for _ in range(4)][-1] > 0  # refilled to the cap of 3, not 180


def test_a_costly_request_spends_its_cost_or_nothing(limiter: tuple[RateLimiter, Clock]) -> None:
    bucket, clock = limiter
    assert bucket.acquire("ana", 2) == 0.0
    assert bucket.acquire("ana", 2) == pytest.approx(20.0)  # one token left of 3: 20 s to the second
    assert bucket.acquire("ana") == 0.0  # the refused request spent nothing
    clock.now += 3600
    assert bucket.acquire("ana", 10) == 0.0  # above the limit: a full bucket pays it, as the limit
    assert bucket.acquire("ana") > 0
