"""Request dependencies: who is asking (API key or the loopback single user), rate limits, sessions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bitzero.service.auth import LOCAL_USER, TOKEN_PREFIX, verify
from bitzero.service.db import transaction
from bitzero.service.state import ServiceState, State
from bitzero.service.store import UserData

INVALID_KEYS = "invalid-key:"  # rate-limit bucket prefix of a client address that sent bad keys
# Declared for the OpenAPI document and its "Authorize" button; `current_user` decides what a key means.
bearer = HTTPBearer(auto_error=False, scheme_name="BitZeroKey",
                    description="`Authorization: Bearer bz-...` (create one with `bitzero keys create`); "
                                "optional in single-user mode, where the service listens on loopback only")


def _too_many(wait: float, what: str) -> HTTPException:
    return HTTPException(429, f"{what}; retry in {wait:.1f} s", headers={"Retry-After": str(int(wait) + 1)})


def _key_owner(request: Request, state: ServiceState, token: str) -> str:
    """The user of a BitZero key, checked in a read-only transaction. Only failures spend the
    client address's bucket: guessing keys is rate-limited, while a valid key is never refused
    for what others sent from the same address (an ingress, a NAT). The address is the peer's,
    or X-Forwarded-For's only behind a proxy named in BITZERO_TRUSTED_PROXIES (see server.py)."""
    with transaction(state.readers) as session:
        user = verify(session, token)
    if user is None:
        bucket = INVALID_KEYS + (request.client.host if request.client else "unknown")
        wait = state.limiter.acquire(bucket)
        if wait > 0:
            raise _too_many(wait, "too many invalid API keys from this address")
        raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return user


@dataclass(frozen=True)
class Caller:
    """Who is asking, and their erasure ticket (taken before the key was checked: see gate.py)."""

    user: str
    ticket: int


def current_caller(
    request: Request, state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Caller:
    """The user id of the Bearer key; without one, the local user, only in single-user mode.

    OpenAI clients insist on sending some key, so in single-user mode a token that is not a
    BitZero key (no "bz-" prefix) also means the local user; a BitZero key must always verify.
    """
    ticket = state.gates.ticket()
    header = request.headers.get("authorization", "").strip()
    token = credentials.credentials.strip() if credentials is not None else ""
    if state.settings.single_user and not token.startswith(TOKEN_PREFIX):
        header, token = "", ""
    if header:
        if not token:
            raise HTTPException(401, "the Authorization header must be 'Bearer <api key>'",
                                headers={"WWW-Authenticate": "Bearer"})
        user = _key_owner(request, state, token)
    elif state.settings.single_user:
        user = LOCAL_USER
    else:
        raise HTTPException(401, "an API key is required: 'Authorization: Bearer <key>' "
                                 "(create one with `bitzero keys create`)", headers={"WWW-Authenticate": "Bearer"})
    wait = state.limiter.acquire(user)
    if wait > 0:
        raise _too_many(wait, f"rate limit of {state.settings.rate_limit_per_minute} requests a minute reached")
    return Caller(user, ticket)


def current_user(caller: Annotated[Caller, Depends(current_caller)]) -> str:
    return caller.user


@dataclass(frozen=True)
class UserScope:
    """The caller and a way to open their rows in one transaction.

    Routes use ``with scope.data() as data:`` and answer after the block: the commit happens
    before the response exists, so a 2xx is only ever sent for a write that is durable. (A
    dependency with ``yield`` would commit after the response had left.) The block runs inside
    the user's gate: never during their erasure, and not at all after one (``Erased``: 409)."""

    state: ServiceState
    user: str
    ticket: int

    @contextmanager
    def data(self) -> Iterator[UserData]:
        with self.state.gates.turn(self.user, self.ticket), transaction(self.state.sessions) as session:
            yield UserData(session, self.user, self.state.memory_cache)


def user_scope(state: State, caller: Annotated[Caller, Depends(current_caller)]) -> UserScope:
    return UserScope(state, caller.user, caller.ticket)


User = Annotated[str, Depends(current_user)]
Scope = Annotated[UserScope, Depends(user_scope)]
