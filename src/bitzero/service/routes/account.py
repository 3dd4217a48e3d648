"""Feedback on replies and the user's privacy: settings, export of everything, erasure."""

from __future__ import annotations


from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from bitzero.companion.feedback import record_erasure, scrub_records
from bitzero.service.db import scrub_database
from bitzero.service.deps import Scope
from bitzero.service.fields import Text
from bitzero.service.store import PRIVACY_FIELDS, UserData

router = APIRouter(prefix="/v1", tags=["account"])


class FeedbackIn(BaseModel):
    message_id: str = Field(min_length=1, max_length=64)
    score: StrictInt = Field(ge=-1, le=1)
    text: Text | None = Field(None, max_length=4000)


class PrivacyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    store_conversations: bool | None = None
    extract_personal_info: bool | None = None
    remember_emotions: bool | None = None
    allow_training: bool | None = None
    retention_days: StrictInt | None = Field(None, ge=1, le=3650)


def _privacy(data: UserData) -> dict:
    row = data.privacy()
    return {name: getattr(row, name) for name in PRIVACY_FIELDS}


@router.post("/feedback", status_code=201)
def feedback(body: FeedbackIn, scope: Scope) -> dict:
    with scope.data() as data:
        message = data.message(body.message_id)
        if message is None or message.role != "assistant":
            raise HTTPException(404, f"no reply {body.message_id!r} of yours is stored (replies are stored only "
                                     "while 'store_conversations' is on)")
        row = data.add_feedback(message, body.score, body.text)
    return {"id": row.id, "message_id": message.id, "score": row.score}


@router.get("/privacy")
def get_privacy(scope: Scope) -> dict:
    with scope.data() as data:
        return _privacy(data)


@router.patch("/privacy")
def set_privacy(body: PrivacyIn, scope: Scope) -> dict:
    with scope.data() as data:
        data.update_privacy(body.model_dump(exclude_none=True))
        settings = _privacy(data)
    return settings


@router.get("/export")
def export(scope: Scope) -> dict:
    with scope.data() as data:
        return data.export()


@router.delete("/me")
def erase(request: Request, scope: Scope) -> dict:
    """Every row of the user, after their chats in flight; their records in the exported training
    file now, and in every file the pipeline derived from it on its next run (the ledger)."""
    state = request.app.state
    with state.gates.erasure(scope.user):
        with scope.data() as data:
            ids = data.feedback_ids()
            counts = data.erase()
        record_erasure(state.settings.erasure_ledger, ids)
        scrub_database(state.engine)
        counts["training_records"] = scrub_records(state.settings.feedback_export, ids)
    return {"erased": counts}
