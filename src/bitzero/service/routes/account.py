"""Feedback on replies and the user's privacy: settings, export of everything, erasure."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from bitzero.data.feedback import record_erasure, scrub_records
from bitzero.service.db import scrub_database
from bitzero.service.deps import Scope
from bitzero.service.fields import Text
from bitzero.service.state import State
from bitzero.service.store import PRIVACY_FIELDS, UserData

router = APIRouter(prefix="/v1", tags=["account"])


class FeedbackIn(BaseModel):
    message_id: str = Field(min_length=1, max_length=64)
    score: StrictInt = Field(ge=-1, le=1)
    text: Text | None = Field(None, max_length=4000)


class FeedbackOut(BaseModel):
    id: str
    message_id: str
    score: int


class Privacy(BaseModel):
    store_conversations: bool
    extract_personal_info: bool
    remember_emotions: bool
    allow_training: bool
    retention_days: int


class UserExport(BaseModel):
    """Everything stored about the user: one list of rows per table (GDPR Art. 20)."""

    model_config = ConfigDict(extra="allow")
    user_id: str
    exported_at: str


class Erased(BaseModel):
    erased: dict[str, int] = Field(description="rows deleted per table, and training records scrubbed")


class PrivacyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    store_conversations: bool | None = None
    extract_personal_info: bool | None = None
    remember_emotions: bool | None = None
    allow_training: bool | None = None
    retention_days: StrictInt | None = Field(None, ge=1, le=3650)


def _privacy(data: UserData) -> Privacy:
    row = data.privacy()
    return Privacy(**{name: getattr(row, name) for name in PRIVACY_FIELDS})


@router.post("/feedback", status_code=201)
def feedback(body: FeedbackIn, scope: Scope) -> FeedbackOut:
    with scope.data() as data:
        message = data.message(body.message_id)
        if message is None or message.role != "assistant":
            raise HTTPException(404, f"no reply {body.message_id!r} of yours is stored (replies are stored only "
                                     "while 'store_conversations' is on)")
        row = data.add_feedback(message, body.score, body.text)
    return FeedbackOut(id=row.id, message_id=message.id, score=row.score)


@router.get("/privacy")
def get_privacy(scope: Scope) -> Privacy:
    with scope.data() as data:
        return _privacy(data)


@router.patch("/privacy")
def set_privacy(body: PrivacyIn, scope: Scope) -> Privacy:
    with scope.data() as data:
        data.update_privacy(body.model_dump(exclude_none=True))
        settings = _privacy(data)
    return settings


@router.get("/export")
def export(scope: Scope) -> UserExport:
    with scope.data() as data:
        return UserExport(**data.export())


@router.delete("/me")
def erase(state: State, scope: Scope) -> Erased:
    """Every row of the user, after their chats in flight; their records in the exported training
    file now, and in every file the pipeline derived from it on its next run (the ledger)."""
    with state.gates.erasure(scope.user):
        with scope.data() as data:
            ids = data.feedback_ids()
            counts = data.erase()
        record_erasure(state.settings.erasure_ledger, ids)
        scrub_database(state.engine)
        counts["training_records"] = scrub_records(state.settings.feedback_export, ids)
    return Erased(erased=counts)
