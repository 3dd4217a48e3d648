"""User-scoped data access: every method of ``UserData`` filters by its own user id, so no route
can read or change another user's rows. Erasure and retention sweep every user table."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from bitzero.companion.extraction import Candidate
from bitzero.companion.memory import Decision, MemoryIndex, consolidate, rank
from bitzero.data.feedback import feedback_record
from bitzero.data.records import Record
from bitzero.service.auth import LOCAL_USER, ensure_user
from bitzero.service.db import insert_missing
from bitzero.service.gate import Erased
from bitzero.service.memory_cache import IndexCache, bump_memory_version, memory_index
from bitzero.service.tables import (
    USER_TABLES,
    ApiKey,
    Conversation,
    Feedback,
    Memory,
    Message,
    PrivacySettings,
    RateBucket,
    User,
    utcnow,
)

# Emotions (special-category data) and training use are opt-in; retention is set in advance.
DEFAULT_PRIVACY = {"store_conversations": True, "extract_personal_info": True, "remember_emotions": False,
                   "allow_training": False, "retention_days": 365}
PRIVACY_FIELDS = tuple(DEFAULT_PRIVACY)


def new_id() -> str:
    return uuid.uuid4().hex


def memory_dict(row: Memory) -> dict[str, Any]:
    return {
        "id": row.id, "category": row.category, "slot": row.slot, "value": row.value, "content": row.content,
        "importance": row.importance, "created_at": row.created_at.isoformat(),
        "last_accessed": row.last_accessed.isoformat(),
        "invalidated_at": row.invalidated_at.isoformat() if row.invalidated_at else None,
        "superseded_by": row.superseded_by,
    }


def _row_dict(row: Any) -> dict[str, Any]:
    out = {}
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, bytes):
            value = np.frombuffer(value, dtype=np.float32).round(6).tolist()
        out[column.key] = value
    return out


class UserData:
    """One user's rows. The user must exist: only the single-user mode's local user is created
    here (with its privacy settings). Any other user is made with their key (``create_key``), so
    a request authenticated before an erasure finds no user to write to, on any replica (Erased)."""

    def __init__(self, session: Session, user_id: str, cache: IndexCache | None = None) -> None:
        self.session = session
        self.user_id = user_id
        self._cache = cache
        self._changed = False  # memories changed in this transaction: the cache must not serve it
        if session.get(User, user_id) is None:
            if user_id != LOCAL_USER:
                raise Erased(user_id)
            ensure_user(session, user_id)
            self.privacy()

    def _memories_changed(self) -> None:
        bump_memory_version(self.session, self.user_id)
        self._changed = True

    # -- privacy ------------------------------------------------------------------------------

    def privacy(self) -> PrivacySettings:
        row = self.session.get(PrivacySettings, self.user_id)
        if row is None:
            insert_missing(self.session, PrivacySettings.__table__, {
                "user_id": self.user_id, **DEFAULT_PRIVACY, "updated_at": utcnow()})
            row = self.session.get(PrivacySettings, self.user_id)
            if row is None:
                raise LookupError(f"no privacy settings for user {self.user_id!r} right after inserting them")
        return row

    def update_privacy(self, changes: dict[str, Any]) -> PrivacySettings:
        row = self.privacy()
        for key, value in changes.items():
            if key not in PRIVACY_FIELDS:
                raise KeyError(key)
            setattr(row, key, value)
        row.updated_at = utcnow()
        if changes.get("remember_emotions") is False:  # consent withdrawn: what it allowed goes too
            self._forget_emotions()
        return row

    def _forget_emotions(self) -> None:
        self.session.execute(delete(Memory).where(Memory.user_id == self.user_id, Memory.category == "emotion"))
        self._memories_changed()
        for message in self.session.scalars(select(Message).where(Message.user_id == self.user_id, Message.emotion.is_not(None))):
            message.emotion = None
        # Stored prompts may hold emotion notes: they go too (feedback then trains on the turns alone).
        self.session.execute(update(Message).where(Message.user_id == self.user_id, Message.prompt.is_not(None))
                             .values(prompt=None))

    # -- conversations ------------------------------------------------------------------------

    def conversation(self, conversation_id: str | None) -> Conversation | None:
        """A new conversation (server-made id) for None; else the user's own with this id, or None.
        Clients never choose ids, so nobody can squat another's id or learn that it exists."""
        if conversation_id is None:
            row = Conversation(id=new_id(), user_id=self.user_id)
            self.session.add(row)
            self.session.flush()
            return row
        return self.session.scalar(select(Conversation).where(
            Conversation.id == conversation_id, Conversation.user_id == self.user_id))

    def conversations(self, limit: int | None = None, conversation_id: str | None = None,
                      ) -> list[tuple[Conversation, list[Message]]]:
        """The user's ``limit`` most recently active conversations (or the one with ``conversation_id``),
        each with its messages in order, the one spoken in last first (a resumed one comes back up)."""
        last = (select(Message.conversation_id, func.max(Message.created_at).label("said"))
                .where(Message.user_id == self.user_id).group_by(Message.conversation_id).subquery())
        query = (select(Conversation).outerjoin(last, last.c.conversation_id == Conversation.id)
                 .where(Conversation.user_id == self.user_id))
        if conversation_id is not None:
            query = query.where(Conversation.id == conversation_id)
        active = func.coalesce(last.c.said, Conversation.created_at)
        rows = self.session.scalars(query.order_by(active.desc(), Conversation.id).limit(limit)).all()
        said: dict[str, list[Message]] = {row.id: [] for row in rows}
        for message in self.session.scalars(select(Message).where(
                Message.user_id == self.user_id, Message.conversation_id.in_(said)).order_by(Message.created_at)):
            said[message.conversation_id].append(message)
        return [(row, said[row.id]) for row in rows]

    def delete_conversation(self, conversation_id: str) -> bool:
        """The user's conversation and its messages gone (False: they have none with this id)."""
        row = self.conversation(conversation_id)
        if row is None:
            return False
        self.session.execute(delete(Message).where(Message.user_id == self.user_id,
                                                   Message.conversation_id == conversation_id))
        self.session.delete(row)
        return True

    def add_message(self, conversation_id: str, role: str, content: str, emotion: str | None = None,
                    message_id: str | None = None, prompt: list[dict[str, str]] | None = None) -> Message:
        row = Message(id=message_id or new_id(), user_id=self.user_id, conversation_id=conversation_id,
                      role=role, content=content, emotion=emotion,
                      prompt=json.dumps(prompt, ensure_ascii=False) if prompt is not None else None)
        self.session.add(row)
        self.session.flush()
        return row

    def message(self, message_id: str) -> Message | None:
        return self.session.scalar(select(Message).where(Message.id == message_id, Message.user_id == self.user_id))

    def messages_before(self, message: Message, limit: int) -> list[Message]:
        rows = self.session.scalars(
            select(Message).where(Message.user_id == self.user_id, Message.conversation_id == message.conversation_id,
                                  Message.created_at <= message.created_at, Message.id != message.id)
            .order_by(Message.created_at.desc()).limit(limit)
        ).all()
        return list(reversed(rows))

    # -- memories -----------------------------------------------------------------------------

    def memories(self, include_invalid: bool = False, category: str | None = None) -> list[Memory]:
        query = select(Memory).where(Memory.user_id == self.user_id)
        if not include_invalid:
            query = query.where(Memory.invalidated_at.is_(None))
        if category:
            query = query.where(Memory.category == category)
        return list(self.session.scalars(query.order_by(Memory.created_at)))

    def memory(self, memory_id: str) -> Memory | None:
        return self.session.scalar(select(Memory).where(Memory.id == memory_id, Memory.user_id == self.user_id))

    def index(self) -> MemoryIndex:
        if self._cache is not None and not self._changed:
            return self._cache.get(self.session, self.user_id)
        return memory_index(self.session, self.user_id)

    def remember(self, candidate: Candidate, vector: np.ndarray) -> tuple[Decision, Memory]:
        """Add a candidate through consolidation: keep, merge, supersede (invalidate) or add."""
        decision = consolidate(candidate, vector, memory_index(self.session, self.user_id))
        self._memories_changed()
        now = utcnow()
        if decision.action in {"keep", "merge"}:
            row = self._target(decision)
            if decision.content != row.content:
                row.content, row.embedding = decision.content, vector.astype(np.float32).tobytes()
                if row.slot == candidate.slot:
                    row.value = candidate.value
            row.importance, row.last_accessed = decision.importance, now
            return decision, row
        row = Memory(id=new_id(), user_id=self.user_id, category=candidate.category, slot=candidate.slot,
                     value=candidate.value, content=decision.content, importance=decision.importance,
                     embedding=vector.astype(np.float32).tobytes(), created_at=now, last_accessed=now)
        self.session.add(row)
        if decision.action == "supersede":
            old = self._target(decision)
            old.invalidated_at, old.superseded_by = now, row.id
        self.session.flush()
        return decision, row

    def _target(self, decision: Decision) -> Memory:
        """The stored memory a keep, merge or supersede decision is about."""
        row = self.memory(decision.target.id) if decision.target is not None else None
        if row is None:
            raise LookupError(f"consolidation chose {decision.action!r} without a stored memory to apply it to")
        return row

    def search(self, query: np.ndarray, limit: int) -> list[tuple[Memory, float]]:
        """Best valid memories for the query (Generative Agents score); refreshes their last access."""
        index = self.index()
        ranked = rank(query, index, utcnow(), limit)
        return self.touch(index, ranked)

    def touch(self, index: MemoryIndex, ranked: list[tuple[int, float]]) -> list[tuple[Memory, float]]:
        """The ranked memories' rows, last access refreshed (any deleted meanwhile are left out)."""
        ids = [index.ids[i] for i, _ in ranked]
        rows = {r.id: r for r in self.session.scalars(
            select(Memory).where(Memory.user_id == self.user_id, Memory.id.in_(ids)))}
        now = utcnow()
        for row in rows.values():
            row.last_accessed = now
        if self._cache is not None:
            self._cache.accessed(self.user_id, rows, now)
        return [(rows[index.ids[i]], score) for i, score in ranked if index.ids[i] in rows]

    def edit_memory(self, memory_id: str, content: str | None, vector: np.ndarray | None,
                    importance: float | None, category: str | None) -> Memory | None:
        row = self.memory(memory_id)
        if row is None:
            return None
        if content is not None and vector is not None:
            # The sentence is the user's own now: what it says is no longer known as data.
            row.content, row.embedding, row.value = content, vector.astype(np.float32).tobytes(), None
        if importance is not None:
            row.importance = importance
        if category is not None:
            row.category = category
        self._memories_changed()
        return row

    def delete_memory(self, memory_id: str) -> bool:
        deleted = _rowcount(self.session.execute(
            delete(Memory).where(Memory.id == memory_id, Memory.user_id == self.user_id)))
        if deleted:
            self._memories_changed()
        return bool(deleted)

    def name(self) -> str | None:
        row = self.session.scalar(select(Memory).where(Memory.user_id == self.user_id, Memory.slot == "name",
                                                       Memory.invalidated_at.is_(None)))
        return row.value if row is not None else None

    # -- feedback -----------------------------------------------------------------------------

    def add_feedback(self, message: Message, score: int, text: str | None) -> Feedback:
        row = Feedback(id=new_id(), user_id=self.user_id, message_id=message.id, score=score, text=text)
        self.session.add(row)
        self.session.flush()
        return row

    # -- export and erasure -------------------------------------------------------------------

    def export(self) -> dict[str, Any]:
        """Everything stored about the user, machine-readable (GDPR Art. 20)."""
        out: dict[str, Any] = {"user_id": self.user_id, "exported_at": utcnow().isoformat()}
        for table in USER_TABLES:
            rows = self.session.scalars(select(table).where(table.user_id == self.user_id)).all()
            out[table.__tablename__] = [_row_dict(r) for r in rows]
        for key in out["api_keys"]:
            key.pop("digest", None)
        return out

    def feedback_ids(self) -> set[str]:
        return set(self.session.scalars(select(Feedback.id).where(Feedback.user_id == self.user_id)))

    def erase(self) -> dict[str, int]:
        """Delete every row of the user in every table, keys and the user row included."""
        counts = {}
        for table in (Feedback, Memory, Message, Conversation, PrivacySettings, ApiKey):
            counts[table.__tablename__] = _rowcount(self.session.execute(
                delete(table).where(table.user_id == self.user_id)))
        counts["users"] = _rowcount(self.session.execute(delete(User).where(User.id == self.user_id)))
        counts["rate_buckets"] = _rowcount(self.session.execute(
            delete(RateBucket).where(RateBucket.key == self.user_id)))
        if self._cache is not None:
            self._cache.forget(self.user_id)
        return counts


def _rowcount(result: object) -> int:
    """Rows a DELETE removed: executing DML gives a CursorResult, which Session.execute types as its base."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"expected the CursorResult of a DML statement, got {type(result).__name__}")
    return result.rowcount


def purge_expired(session: Session, now: datetime | None = None) -> dict[str, int]:
    """Retention: delete each user's messages, memories and feedback older than their retention days
    (the default days for a user who never saved settings), and rate-limit buckets idle for a minute
    (full again: the same as none)."""
    now = now or utcnow()
    idle = now.replace(tzinfo=UTC).timestamp() - 60
    counts = {"messages": 0, "memories": 0, "feedback": 0, "conversations": 0,
              "rate_buckets": _rowcount(session.execute(delete(RateBucket).where(RateBucket.updated < idle)))}
    users = select(User.id, PrivacySettings.retention_days).outerjoin(PrivacySettings, PrivacySettings.user_id == User.id)
    for uid, days in session.execute(users).all():
        cutoff = now - timedelta(days=days if days is not None else DEFAULT_PRIVACY["retention_days"])
        counts["feedback"] += _rowcount(session.execute(
            delete(Feedback).where(Feedback.user_id == uid, Feedback.created_at < cutoff)))
        counts["messages"] += _rowcount(session.execute(
            delete(Message).where(Message.user_id == uid, Message.created_at < cutoff)))
        forgotten = _rowcount(session.execute(delete(Memory).where(Memory.user_id == uid, Memory.created_at < cutoff)))
        if forgotten:
            bump_memory_version(session, uid)
        counts["memories"] += forgotten
        empty = select(Message.conversation_id).where(Message.user_id == uid)
        counts["conversations"] += _rowcount(session.execute(
            delete(Conversation).where(Conversation.user_id == uid, Conversation.created_at < cutoff,
                                       Conversation.id.not_in(empty))))
    return counts


def training_records(session: Session, context_turns: int = 8) -> list[Record]:
    """Feedback of users who allow training use, as records for the pipeline: each with the prompt
    the reply was generated from (replies stored before prompts were kept: the turns before it)."""
    records = []
    consenting = select(PrivacySettings.user_id).where(PrivacySettings.allow_training.is_(True))
    for feedback in session.scalars(select(Feedback).where(Feedback.user_id.in_(consenting)).order_by(Feedback.created_at)):
        data = UserData(session, feedback.user_id)
        message = data.message(feedback.message_id)
        if message is None or message.role != "assistant":
            continue
        prompt = json.loads(message.prompt) if message.prompt else [
            {"role": m.role, "content": m.content} for m in data.messages_before(message, context_turns)]
        record = feedback_record(feedback.id, prompt, message.content, feedback.score, feedback.text)
        if record is not None:
            records.append(record)
    return records
