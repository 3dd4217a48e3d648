"""The user's stored conversations: a list with titles, one restored in full, deleted (only their own).

A title is the start of the conversation's first message: nothing new is stored to make one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field

from bitzero.service.deps import Scope
from bitzero.service.tables import Conversation, Message

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
TITLE_CHARS = 60


class MessageOut(BaseModel):
    id: str
    role: Literal["user", "assistant"]
    content: str
    created_at: str


class ConversationOut(BaseModel):
    id: str = Field(description="send it as `conversation_id` in a chat request to resume the conversation")
    title: str = Field(description="the start of its first message")
    created_at: str
    updated_at: str = Field(description="when its last message was said")
    message_count: int


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]


class ConversationList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ConversationOut]


def _title(messages: list[Message]) -> str:
    first = " ".join(messages[0].content.split()) if messages else ""
    return first if len(first) <= TITLE_CHARS else first[: TITLE_CHARS - 1].rstrip() + "…"


def _summary(row: Conversation, messages: list[Message]) -> dict:
    last = messages[-1].created_at if messages else row.created_at
    return {"id": row.id, "title": _title(messages), "created_at": row.created_at.isoformat(),
            "updated_at": last.isoformat(), "message_count": len(messages)}


@router.get("")
def list_conversations(scope: Scope, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> ConversationList:
    """The most recently active first (a resumed conversation comes back to the top)."""
    with scope.data() as data:
        found = data.conversations(limit)
        return ConversationList(data=[ConversationOut(**_summary(row, messages)) for row, messages in found])


@router.get("/{conversation_id}")
def get_conversation(conversation_id: str, scope: Scope) -> ConversationDetail:
    with scope.data() as data:
        found = data.conversations(conversation_id=conversation_id)
        if not found:
            raise HTTPException(404, f"conversation {conversation_id!r} not found")
        (row, messages), = found
        return ConversationDetail(**_summary(row, messages), messages=[
            MessageOut.model_validate({"id": m.id, "role": m.role, "content": m.content,
                                       "created_at": m.created_at.isoformat()}) for m in messages])


@router.delete("/{conversation_id}", status_code=204)
def delete_conversation(conversation_id: str, scope: Scope) -> Response:
    with scope.data() as data:
        if not data.delete_conversation(conversation_id):
            raise HTTPException(404, f"conversation {conversation_id!r} not found")
    return Response(status_code=204)
