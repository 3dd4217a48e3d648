"""Request dependencies: who is asking (API key or the loopback single user), rate limits, sessions."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from bitzero.service.auth import LOCAL_USER, TOKEN_PREFIX, verify
from bitzero.service.chat import Companion
from bitzero.service.db import transaction
from bitzero.service.store import UserData


def current_user(request: Request) -> str:
    """The user id of the Bearer key; without one, the local user, only in single-user mode.

    OpenAI clients insist on sending some key, so in single-user mode a token that is not a
    BitZero key (no "bz-" prefix) also means the local user; a BitZero key must always verify.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    state = request.app.state
    if state.settings.single_user and not token.strip().startswith(TOKEN_PREFIX):
        header = ""
    if header:
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, "the Authorization header must be 'Bearer <api key>'",
                                headers={"WWW-Authenticate": "Bearer"})
        with transaction(state.sessions) as session:
            user = verify(session, token.strip())
        if user is None:
            raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    elif state.settings.single_user:
        user = LOCAL_USER
    else:
        raise HTTPException(401, "an API key is required: 'Authorization: Bearer <key>' "
                                 "(create one with `bitzero keys create`)", headers={"WWW-Authenticate": "Bearer"})
    wait = state.limiter.acquire(user)
    if wait > 0:
        raise HTTPException(429, f"rate limit of {state.settings.rate_limit_per_minute} requests a minute "
                                 f"reached; retry in {wait:.1f} s", headers={"Retry-After": str(int(wait) + 1)})
    return user


def user_data(request: Request, user: str = Depends(current_user)) -> Iterator[UserData]:
    """The user's rows inside one transaction that commits when the route returns."""
    session: Session
    with transaction(request.app.state.sessions) as session:
        yield UserData(session, user, request.app.state.memory_cache)


def companion(request: Request) -> Companion:
    if request.app.state.companion is None:
        raise HTTPException(503, "the model is still loading")
    return request.app.state.companion
