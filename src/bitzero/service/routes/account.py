"""Feedback on replies and the user's privacy: settings, export of everything, erasure."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from bitzero.data.feedback import record_erasure, scrub_records
from bitzero.service.db import transaction
from bitzero.service.deps import Scope
from bitzero.service.fields import Text
from bitzero.service.state import State
from bitzero.service.store import PRIVACY_FIELDS, UserData

router = APIRouter(prefix="/v1", tags=["account"])
log = logging.getLogger("bitzero.service")


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
    scrubbed: bool = Field(description="the SQLite files hold no erased text now; false while another "
                                       "reader pins the WAL (scrubbed each second until it ends) and "
                                       "always on PostgreSQL (see the README)")


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


@router.delete("/me", responses={503: {"description": "the erasure could not be recorded: nothing was erased, retry"}})
def erase(state: State, scope: Scope) -> Erased:
    """Every row of the user, after their requests in flight; their records in the exported training
    file now, and in every file the pipeline derived from it on its next run (the ledger).

    One transaction, in an order that leaves nothing behind whatever fails: the ledger and the
    exported file are written while the rows still exist, and the rows go only if both succeeded
    (a failure rolls everything back and the key still works for a retry)."""
    settings = state.settings
    with state.gates.erasure(scope.user), transaction(state.sessions) as session:
        data = UserData(session, scope.user, state.memory_cache)
        ids = data.feedback_ids()
        try:
            record_erasure(settings.erasure_ledger, ids)
            scrubbed_records = scrub_records(settings.feedback_export, ids)
        except OSError as exc:
            log.error("erasure not recorded (%s): nothing erased", type(exc).__name__)
            raise HTTPException(503, "the erasure could not be recorded in the erasure ledger or the exported "
                                     "training file; nothing was erased: retry later") from exc
        counts = {**data.erase(), "training_records": scrubbed_records}
    return Erased(erased=counts, scrubbed=state.scrubber.scrub())
