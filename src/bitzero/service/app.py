"""The FastAPI app factory: settings in, app out. The models, embedder and emotion classifier load
in the lifespan (so a startupProbe can wait for them) unless the caller passes them in (tests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from bitzero.companion.embeddings import Embedder, OnnxEmbedder
from bitzero.companion.emotion import EMOTION_FILE, EmotionClassifier, EmotionDetector, emotion_files
from bitzero.service.admission import Admission
from bitzero.service.chat import Companion
from bitzero.service.db import WalScrubber, make_engine, migrate, session_factory, transaction
from bitzero.service.docs import docs_page
from bitzero.service.gate import Erased
from bitzero.service.limits import BodyLimit, HostGuard, SecurityHeaders, rate_limiter
from bitzero.service.memory_cache import IndexCache
from bitzero.service.metrics import Metrics
from bitzero.service.model import ChatModel, ModelSet, load_models
from bitzero.service.routes import account, conversations, memories, openai, ops
from bitzero.service.settings import Settings
from bitzero.service.state import ServiceState
from bitzero.service.store import purge_expired
from bitzero.serving.bundle import verify_extra

log = logging.getLogger("bitzero.service")
STATIC = Path(__file__).resolve().parent / "static"


# Replies a model decodes together in one batched step (bitzero.serving.batch); admitted turns
# beyond them wait for a slot. A model that does not batch (slots 1) answers one turn at a time.
GENERATION_SLOTS = 16

def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict:
    """OpenAI's error shape, which OpenAI clients turn into readable exceptions."""
    return {"error": {"message": message, "type": kind, "code": code}}


def _load_detector(settings: Settings, bundle: Path | None) -> EmotionDetector | None:
    """The classifier of ``bundle`` (the champion's) unless the settings name one."""
    path = settings.emotion_path(bundle)
    if not path.is_file():
        log.warning("no emotion classifier at %s: emotions are not detected", path)
        return None
    if bundle is not None and path == bundle / EMOTION_FILE:  # the bundle's own: as the manifest lists them
        for name in emotion_files(path):
            verify_extra(bundle, name)
    return EmotionDetector(EmotionClassifier.load(path))


def create_app(
    settings: Settings | None = None,
    *,
    model: ChatModel | None = None,
    models: ModelSet | None = None,
    embedder: Embedder | None = None,
    detector: EmotionDetector | None = None,
) -> FastAPI:
    settings = settings or Settings.from_env()
    engine = make_engine(settings.database_url)
    sessions, readers = session_factory(engine), session_factory(engine, read_only=True)
    memory_cache = IndexCache()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(engine)
        with transaction(sessions) as session:
            log.info("retention at start: %s", purge_expired(session))
        served = models or (ModelSet.single(model) if model is not None
                            else load_models(settings.bundles, settings.variant, settings.threads, GENERATION_SLOTS))
        chat_embedder = embedder or OnnxEmbedder(settings.embedder, threads=settings.threads)
        chat_detector = detector if detector is not None else _load_detector(settings, served.champion.folder)
        state.companion = Companion(served, chat_embedder, chat_detector, sessions, memory_cache,
                                        persona=settings.persona, decoding=settings.decoding,
                                        memory_limit=settings.memory_limit,
                                        max_seconds=settings.max_generation_seconds)
        metrics.model_loaded.set(1)
        sweeper = asyncio.create_task(_retention_loop(settings.retention_sweep_seconds))
        scrubbing = asyncio.create_task(_scrub_loop())
        log.info("serving %s (champion %s) at http://%s:%d", ", ".join(served.ids), served.champion.id,
                 settings.host, settings.port)
        try:
            yield
        finally:
            sweeper.cancel()
            scrubbing.cancel()
            metrics.model_loaded.set(0)
            engine.dispose()

    async def _retention_loop(every: int) -> None:
        while True:
            await asyncio.sleep(every)
            def sweep() -> dict[str, int]:
                with transaction(sessions) as session:
                    return purge_expired(session)
            log.info("retention sweep: %s", await asyncio.to_thread(sweep))

    async def _scrub_loop() -> None:
        """Finishes the WAL scrub an erasure could not do while a reader pinned the file."""
        while True:
            await asyncio.sleep(1)
            await asyncio.to_thread(state.scrubber.retry)

    app = FastAPI(title="BitZero companion", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = state = ServiceState(
        settings=settings, engine=engine, sessions=sessions, readers=readers, metrics=metrics,
        limiter=rate_limiter(settings, sessions), memory_cache=memory_cache, started=time.time(),
        scrubber=WalScrubber(engine),
        admission=Admission(GENERATION_SLOTS + settings.max_waiting_chats, settings.max_chats_per_user))

    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics.requests.labels(name, str(response.status_code)).inc()
        metrics.latency.labels(name).observe(time.perf_counter() - start)
        # Never the body: message content stays out of logs.
        log.info("%s %s %d %.1fms", request.method, name, response.status_code, 1000 * (time.perf_counter() - start))
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse(error_body(f"invalid request: {problems}"), status_code=400)

    @app.exception_handler(Erased)
    async def erased(_: Request, exc: Erased) -> JSONResponse:
        return JSONResponse(error_body("your data was erased while this request waited; nothing was written",
                                       code="409"), status_code=409)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail), code=str(exc.status_code)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return docs_page(app.openapi_url or "/openapi.json", app.title)

    for module in (openai, conversations, memories, account, ops):
        app.include_router(module.router)
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    app.add_middleware(HostGuard, hosts=settings.hosts, every_route=settings.single_user)
    app.add_middleware(SecurityHeaders)
    return app
