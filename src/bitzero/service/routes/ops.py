"""Operations: liveness, readiness (model loaded, database reachable) and Prometheus metrics."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from bitzero.service.db import reachable
from bitzero.service.state import State

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    model: bool
    database: bool
    capacity: bool


@router.get("/healthz")
def healthz() -> Health:
    return Health()


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": "not ready"}})
def readyz(state: State) -> JSONResponse:
    checks = {"model": state.companion is not None, "database": reachable(state.engine),
              "capacity": state.companion is not None and not state.admission.saturated}
    readiness = Readiness(ready=all(checks.values()), **checks)
    return JSONResponse(readiness.model_dump(), status_code=200 if readiness.ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
