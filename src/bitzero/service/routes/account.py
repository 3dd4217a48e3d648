"""Feedback on replies and the user's privacy: settings, export of everything, erasure."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from bitzero.companion.feedback import scrub_records
from bitzero.service.deps import user_data
from bitzero.service.store import PRIVACY_FIELDS, UserData

router = APIRouter(prefix="/v1", tags=["account"])


class FeedbackIn(BaseModel):
    message_id: str = Field(min_length=1, max_length=64)
    score: Literal[-1, 0, 1]
    text: str | None = Field(None, max_length=4000)


class PrivacyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    store_conversations: bool | None = None
    extract_personal_info: bool | None = None
    remember_emotions: bool | None = None
    allow_training: bool | None = None
    retention_days: int | None = Field(None, ge=1, le=3650)


def _privacy(data: UserData) -> dict:
    row = data.privacy()
    return {name: getattr(row, name) for name in PRIVACY_FIELDS}


@router.post("/feedback", status_code=201)
def feedback(body: FeedbackIn, data: UserData = Depends(user_data)) -> dict:
    message = data.message(body.message_id)
    if message is None or message.role != "assistant":
        raise HTTPException(404, f"no reply {body.message_id!r} of yours is stored (replies are stored only "
                                 "while 'store_conversations' is on)")
    row = data.add_feedback(message, body.score, body.text)
    return {"id": row.id, "message_id": message.id, "score": row.score}


@router.get("/privacy")
def get_privacy(data: UserData = Depends(user_data)) -> dict:
    return _privacy(data)


@router.patch("/privacy")
def set_privacy(body: PrivacyIn, data: UserData = Depends(user_data)) -> dict:
    data.update_privacy(body.model_dump(exclude_none=True))
    return _privacy(data)


@router.get("/export")
def export(data: UserData = Depends(user_data)) -> dict:
    return data.export()


@router.delete("/me")
def erase(request: Request, data: UserData = Depends(user_data)) -> dict:
    """Every row of the user, and their records in the exported training file."""
    ids = data.feedback_ids()
    counts = data.erase()
    counts["training_records"] = scrub_records(request.app.state.settings.feedback_export, ids)
    return {"erased": counts}
