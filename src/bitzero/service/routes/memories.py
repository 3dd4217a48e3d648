"""The user's memories: list, search, edit, delete (always only their own)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field

from bitzero.companion.extraction import Candidate
from bitzero.companion.memory import rank
from bitzero.service.db import transaction
from bitzero.service.deps import Scope
from bitzero.service.fields import Text, is_utf8
from bitzero.service.state import Chat, State, loaded_companion
from bitzero.service.store import memory_dict
from bitzero.service.tables import utcnow

router = APIRouter(prefix="/v1/memories", tags=["memories"])
Category = Literal["fact", "preference", "emotion", "note"]


class MemoryEdit(BaseModel):
    content: Text | None = Field(None, min_length=1, max_length=2000)
    importance: float | None = Field(None, ge=1.0, le=10.0)
    category: Category | None = None


class MemoryCreate(BaseModel):
    content: Text = Field(min_length=1, max_length=2000)
    importance: float = Field(5.0, ge=1.0, le=10.0)
    category: Category = "note"


class MemoryOut(BaseModel):
    id: str
    category: Category
    slot: str | None
    value: str | None = Field(description="what fills the slot (the name for slot \"name\"); null once the text is edited")
    content: str
    importance: float
    created_at: str
    last_accessed: str
    invalidated_at: str | None = Field(description="set when a later memory contradicted this one")
    superseded_by: str | None


class ScoredMemory(MemoryOut):
    score: float = Field(description="relevance, recency and importance combined")


class MemoryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[MemoryOut]


class ScoredMemoryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ScoredMemory]


@router.get("")
def list_memories(scope: Scope, include_invalid: bool = False, category: Category | None = None) -> MemoryList:
    with scope.data() as data:
        return MemoryList(data=[MemoryOut(**memory_dict(m)) for m in data.memories(include_invalid, category)])


@router.get("/search")
def search_memories(
    state: State, scope: Scope, chat: Chat, q: Annotated[str, Query(min_length=1, max_length=2000)],
    limit: Annotated[int, Query(ge=1, le=100)] = 5,
) -> ScoredMemoryList:
    """Scored in a read-only transaction (searches run side by side), then a short write refreshes
    the last access of what was found."""
    if not q.strip() or not is_utf8(q):
        raise HTTPException(400, "q must be a non-empty query of at most 2000 characters")
    vector = chat.embedder.encode([q])[0]
    with transaction(state.readers) as session:
        index = state.memory_cache.get(session, scope.user)
    ranked = rank(vector, index, utcnow(), limit)
    with scope.data() as data:
        found = data.touch(index, ranked)
        result = [ScoredMemory(**memory_dict(row), score=round(score, 4)) for row, score in found]
    return ScoredMemoryList(data=result)


@router.post("", status_code=201)
def add_memory(body: MemoryCreate, scope: Scope, chat: Chat) -> MemoryOut:
    vector = chat.embedder.encode([body.content])[0]
    with scope.data() as data:
        _, row = data.remember(Candidate(body.category, None, body.content, body.importance), vector)
    return MemoryOut(**memory_dict(row))


@router.patch("/{memory_id}")
def edit_memory(memory_id: str, body: MemoryEdit, state: State, scope: Scope) -> MemoryOut:
    vector = loaded_companion(state).embedder.encode([body.content])[0] if body.content is not None else None
    with scope.data() as data:
        row = data.edit_memory(memory_id, body.content, vector, body.importance, body.category)
        if row is None:
            raise HTTPException(404, f"memory {memory_id!r} not found")
    return MemoryOut(**memory_dict(row))


@router.delete("/{memory_id}", status_code=204)
def delete_memory(memory_id: str, scope: Scope) -> Response:
    with scope.data() as data:
        if not data.delete_memory(memory_id):
            raise HTTPException(404, f"memory {memory_id!r} not found")
    return Response(status_code=204)
