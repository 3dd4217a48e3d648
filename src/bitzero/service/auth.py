"""API keys: a random token shown once; only its SHA-256 and a short prefix are stored.

The token carries 256 bits of randomness, so a plain SHA-256 is a sound verifier (no password
stretching needed); lookups go by prefix and the digest is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bitzero.service.db import insert_missing
from bitzero.service.tables import ApiKey, User, utcnow

TOKEN_PREFIX = "bz-"
PREFIX_CHARS = 8
LOCAL_USER = "local"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    id: int
    user_id: str
    prefix: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


def ensure_user(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        insert_missing(session, User.__table__, {"id": user_id, "created_at": utcnow()})
        user = session.get(User, user_id)
        if user is None:
            raise LookupError(f"no user {user_id!r} right after inserting it")
    return user


def create_key(session: Session, user_id: str | None = None, label: str = "") -> tuple[str, KeyInfo]:
    """A new key for ``user_id`` (a new user when None); returns the token, shown only this once."""
    user = ensure_user(session, user_id or uuid.uuid4().hex)
    secret = secrets.token_urlsafe(32)
    token = f"{TOKEN_PREFIX}{secret}"
    row = ApiKey(user_id=user.id, prefix=secret[:PREFIX_CHARS], digest=_digest(token), label=label)
    session.add(row)
    session.flush()
    return token, _info(row)


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.user_id, row.prefix, row.label, row.created_at, row.revoked_at)


def list_keys(session: Session, user_id: str | None = None) -> list[KeyInfo]:
    query = select(ApiKey).order_by(ApiKey.id)
    if user_id:
        query = query.where(ApiKey.user_id == user_id)
    return [_info(row) for row in session.scalars(query)]


def revoke_key(session: Session, prefix: str) -> int:
    """Revoke every active key with this prefix; returns how many were revoked."""
    rows = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))).all()
    for row in rows:
        row.revoked_at = utcnow()
    return len(rows)


def verify(session: Session, token: str) -> str | None:
    """The user id a token belongs to, or None (unknown, malformed or revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) < len(TOKEN_PREFIX) + PREFIX_CHARS:
        return None
    prefix = token[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + PREFIX_CHARS]
    digest = _digest(token)
    user = None
    for row in session.scalars(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))):
        if hmac.compare_digest(row.digest, digest):
            user = row.user_id
    return user
