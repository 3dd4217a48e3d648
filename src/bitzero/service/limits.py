"""Request gates: per-key rate limits (token bucket), a request-size cap that also catches
chunked bodies, and the Host/Origin allow-list that defeats DNS rebinding."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import case
from sqlalchemy.orm import Session, sessionmaker

from bitzero.service.db import transaction, upsert
from bitzero.service.settings import ANY_HOST, Settings
from bitzero.service.tables import RateBucket

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RateLimiter(Protocol):
    """``per_minute`` requests per key, refilled continuously; bursts up to the same number."""

    per_minute: int

    def acquire(self, key: str, cost: int = 1) -> float:
        """0 when allowed (``cost`` tokens are spent), else the seconds until it would be (nothing
        spent). A cost above the limit counts as the limit: a full bucket always pays it."""
        ...


def _refill(tokens: float, seconds: float, per_minute: int) -> float:
    """A bucket's tokens ``seconds`` after it held ``tokens``: refilled at the rate, capped at the
    limit (time running backwards, a replica's clock behind the last writer's, refills nothing)."""
    return min(float(per_minute), tokens + max(0.0, seconds) * per_minute / 60.0)


def _wait(tokens: float, per_minute: int, cost: int = 1) -> float:
    """Seconds until a bucket holding ``tokens`` has ``cost`` whole tokens again."""
    return 0.0 if tokens >= cost else (cost - tokens) * 60.0 / per_minute


@dataclass
class _Bucket:
    tokens: float
    updated: float


class MemoryRateLimiter:
    """Buckets in this process: the limit holds per replica (the default with SQLite, one process)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, cost: int = 1) -> float:
        now, cost = self._clock(), min(cost, self.per_minute)
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket(float(self.per_minute), now))
            bucket.tokens, bucket.updated = _refill(bucket.tokens, now - bucket.updated, self.per_minute), now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return _wait(bucket.tokens, self.per_minute, cost)


class DatabaseRateLimiter:
    """Buckets in the database every replica shares: one atomic upsert a request, so 120 a minute
    per key stays 120 with any number of replicas. The row lock of PostgreSQL's
    ``INSERT ... ON CONFLICT DO UPDATE`` orders concurrent requests of a key."""

    def __init__(self, per_minute: int, sessions: sessionmaker[Session], clock: Callable[[], float] = time.time) -> None:
        self.per_minute = per_minute
        self._sessions, self._clock = sessions, clock

    def _refilled(self, tokens: Any, updated: Any, now: float) -> Any:
        """``_refill`` as SQL over the row's columns, for the one-statement upsert."""
        refill = tokens + case((updated > now, 0.0), else_=now - updated) * (self.per_minute / 60.0)
        return case((refill > self.per_minute, float(self.per_minute)), else_=refill)

    def acquire(self, key: str, cost: int = 1) -> float:
        now, table, cost = self._clock(), RateBucket.__table__, min(cost, self.per_minute)
        refill = self._refilled(table.c.tokens, table.c.updated, now)
        with transaction(self._sessions) as session:
            insert = upsert(session, table).values(key=key, tokens=float(self.per_minute - cost), updated=now,
                                                   allowed=True)
            statement = insert.on_conflict_do_update(index_elements=[table.c.key], set_={
                "tokens": case((refill >= cost, refill - cost), else_=refill),
                "updated": case((table.c.updated > now, table.c.updated), else_=now),
                "allowed": refill >= cost,
            }).returning(table.c.tokens, table.c.allowed)
            tokens, allowed = session.execute(statement).one()
        return 0.0 if allowed else _wait(tokens, self.per_minute, cost)


def rate_limiter(settings: Settings, sessions: sessionmaker[Session]) -> RateLimiter:
    """The limiter the settings ask for (BITZERO_RATE_LIMIT_STORE; "auto": shared with PostgreSQL)."""
    if settings.shared_rate_limit:
        return DatabaseRateLimiter(settings.rate_limit_per_minute, sessions)
    return MemoryRateLimiter(settings.rate_limit_per_minute)


async def send_error(send, status: int, message: str, code: str) -> None:
    """An OpenAI-shaped JSON error, sent straight from ASGI middleware."""
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": code}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, declared or streamed.

    A streamed body over the limit is answered here, and the app sees the client as gone: the
    answer is 413 whatever the app makes of a body cut short (FastAPI would say 400)."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(send)
            return
        seen, rejected = 0, False

        async def counted():
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    rejected = True
                    await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def unless_rejected(message) -> None:
            if not rejected:
                await send(message)

        await self.app(scope, counted, unless_rejected)

    async def _reject(self, send) -> None:
        await send_error(send, 413, f"request body over {self.limit} bytes", "request_too_large")


_HOST = re.compile(r"(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._-]+))(?::[0-9]{1,5})?")


def host_name(value: str) -> str:
    """The lower-case name of a Host header: "[::1]:8000" gives "::1", "Example.com:80" "example.com";
    "" for anything else a browser never sends ("localhost:80@evil.example"), which no list allows."""
    found = _HOST.fullmatch(value.strip().lower())
    return (found.group("ip6") or found.group("name")) if found else ""


class HostGuard:
    """ASGI middleware: 403 unless the Host is allowed and a sent Origin names an allowed host.

    A page that rebinds its own name to 127.0.0.1 sends its own name as Host; a cross-site form
    or fetch sends its site as Origin. Checked on every route when ``every_route`` (single-user
    mode, where no key stands in the way), else on state-changing methods only."""

    def __init__(self, app, hosts: frozenset[str], every_route: bool) -> None:
        self.app, self.hosts, self.every_route = app, hosts, every_route

    def _allowed(self, name: str | None, host: str) -> bool:
        return bool(name) and (name in self.hosts or (ANY_HOST in self.hosts and name == host))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or (not self.every_route and scope["method"] in SAFE_METHODS):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = host_name(headers.get(b"host", b"").decode("latin-1"))
        origin = headers.get(b"origin")
        origin_name = urlsplit(origin.decode("latin-1")).hostname if origin is not None else host
        if not self._allowed(host, host) or not self._allowed(origin_name, host):
            await send_error(send, 403, "this Host or Origin is not allowed (set BITZERO_ALLOWED_HOSTS)",
                             "forbidden_host")
            return
        await self.app(scope, receive, send)


FRAME_HEADERS = [(b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'"),
                 (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


class SecurityHeaders:
    """ASGI middleware: no page or answer of the service may be framed by another site (the chat
    page's buttons could otherwise be clicked through an invisible frame), nor sniffed as another type."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *FRAME_HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers)
