"""What the service holds while it runs, typed: routes take it as a dependency (``State``) instead
of reading attributes off Starlette's untyped ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bitzero.service.admission import Admission
from bitzero.service.chat import Companion
from bitzero.service.db import WalScrubber
from bitzero.service.gate import UserGates
from bitzero.service.limits import RateLimiter
from bitzero.service.memory_cache import IndexCache
from bitzero.service.metrics import Metrics
from bitzero.service.settings import Settings


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    readers: sessionmaker[Session]  # read-only transactions
    metrics: Metrics
    limiter: RateLimiter
    memory_cache: IndexCache
    started: float  # seconds since the epoch; the models' "created"
    scrubber: WalScrubber
    admission: Admission
    gates: UserGates = field(default_factory=UserGates)
    companion: Companion | None = None  # set once the lifespan has loaded the models


def service_state(app: FastAPI) -> ServiceState:
    state: ServiceState = app.state.service
    return state


def request_state(request: Request) -> ServiceState:
    return service_state(request.app)


def loaded_companion(state: Annotated[ServiceState, Depends(request_state)]) -> Companion:
    """The companion, or 503 while the models load (a startupProbe waits on /readyz meanwhile)."""
    if state.companion is None:
        raise HTTPException(503, "the model is still loading")
    return state.companion


State = Annotated[ServiceState, Depends(request_state)]
Chat = Annotated[Companion, Depends(loaded_companion)]
