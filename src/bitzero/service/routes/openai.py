"""OpenAI-compatible chat: POST /v1/chat/completions (plain and server-sent events), GET /v1/models."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from bitzero.service.chat import ChatError, Companion, Lease, Turn
from bitzero.service.deps import Scope, User
from bitzero.service.model import UnknownModel
from bitzero.service.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ChunkChoice,
    Delta,
    FinishReason,
    ModelCard,
    ModelList,
    Reply,
    Usage,
)
from bitzero.service.settings import Settings
from bitzero.service.state import Chat, ServiceState, State

router = APIRouter(prefix="/v1", tags=["openai"])
log = logging.getLogger("bitzero.service")


CHARS_PER_TOKEN = 500  # a chat's cost in the rate budget: one request, plus one per this many characters


def _charge(state: ServiceState, user: str, turns: list[dict[str, str]]) -> None:
    """Count a long chat against the user's rate budget by its size (the request itself is paid
    already): the largest allowed costs seconds of a core to read, embed and tokenize."""
    extra = sum(len(t["content"]) for t in turns) // CHARS_PER_TOKEN
    wait = state.limiter.acquire(user, extra) if extra else 0.0
    if wait > 0:
        raise HTTPException(429, f"these messages cost {extra + 1} of your {state.settings.rate_limit_per_minute} "
                                 f"requests a minute (one per {CHARS_PER_TOKEN} characters); retry in {wait:.1f} s",
                            headers={"Retry-After": str(int(wait) + 1)})


def _turns(body: ChatRequest, settings: Settings) -> list[dict[str, str]]:
    """The messages as turns, refused before any tokenizing when longer than the limits allow."""
    turns = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    longest = max(len(t["content"]) for t in turns)
    if longest > settings.max_message_chars or sum(len(t["content"]) for t in turns) > settings.max_prompt_chars:
        raise HTTPException(413, f"messages are limited to {settings.max_message_chars} characters each and "
                                 f"{settings.max_prompt_chars} in all")
    return turns


STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"description": "The reply, or with `stream: true` server-sent events, each "
                                        "`data: <ChatCompletionChunk>` and finally `data: [DONE]` (an error "
                                        "mid-stream arrives as `data: {\"error\": {...}}`).",
                         "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


@router.get("/models")
def models(state: State, _: User, chat: Chat) -> ModelList:
    created = int(state.started)
    return ModelList(data=[
        ModelCard(id=s.id, created=created, champion=s.champion, kind=s.kind, variant=s.variant,
                  context_length=s.model.context_length, bundle_id=s.model.model_id,
                  decoding=chat.decoding_for(s).as_dict())
        for s in chat.models
    ])


@router.post("/chat/completions", response_model=ChatCompletion, responses=STREAM_RESPONSE)
async def chat_completions(body: ChatRequest, request: Request, state: State, scope: Scope,
                           engine: Chat) -> ChatCompletion | StreamingResponse:
    try:
        served = engine.models.pick(body.model)
    except UnknownModel as exc:
        raise HTTPException(404, str(exc)) from exc
    turns = _turns(body, state.settings)
    _charge(state, scope.user, turns)
    max_tokens = body.max_completion_tokens or body.max_tokens
    user = scope.user
    try:
        lease = await run_in_threadpool(state.admission.admit, user, state.gates, scope.ticket)
    except ChatError as exc:
        raise HTTPException(exc.status, str(exc), headers={"Retry-After": "2"} if exc.status in (429, 503) else None) from exc
    try:
        turn = await run_in_threadpool(engine.prepare, user, turns, served, max_tokens, body.conversation_id)
    except BaseException as exc:
        lease.close()
        if isinstance(exc, ChatError):
            raise HTTPException(exc.status, str(exc)) from exc
        raise
    asked = body.asked()
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _events(engine, turn, asked, lease.cancel, created, include_usage, state.metrics)
        return LeasedStream(events, lease, media_type="text/event-stream",
                            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        return await _until_disconnect(request, lease.cancel,
                                       run_in_threadpool(_complete, engine, turn, asked, lease.cancel, created,
                                                         state.metrics))
    finally:
        lease.close()


class LeasedStream(StreamingResponse):
    """A stream that ends its turn when it ends, however: finished, failed or the client gone.

    Starlette stops iterating when the client disconnects but leaves the generator suspended
    (holding the generation slot) until garbage collection; here it is closed at once."""

    def __init__(self, content: Generator[str, None, None], lease: Lease, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.source, self.lease = content, lease

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.lease.cancel.set()
            with contextlib.suppress(ValueError):  # still running in its thread: the flag stops it
                self.source.close()
            self.lease.close()


async def _until_disconnect(request: Request, cancel: threading.Event, work):
    """Await ``work``, setting ``cancel`` the moment the client disconnects (generation then stops
    at its next token and the slot is free). The body is read already, so the next ASGI message
    is the disconnect: waited for, not polled (``is_disconnected`` under a middleware that wraps
    ``receive`` never sees it)."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        cancel.set()

    watcher = asyncio.ensure_future(disconnected())
    try:
        return await work
    finally:
        watcher.cancel()


def _usage(turn: Turn, tokens: int) -> Usage:
    return Usage(prompt_tokens=len(turn.prompt_ids), completion_tokens=tokens,
                 total_tokens=len(turn.prompt_ids) + tokens)


def _head(turn: Turn, created: int) -> dict:
    """The fields every object of one reply shares."""
    return {"id": turn.completion_id, "created": created, "model": turn.served.id,
            "conversation_id": turn.conversation_id, "emotion": turn.reading.emotion if turn.reading else None}


class _Reply:
    """Runs a turn's generation, counting tokens and timing the first text; stores the reply at the end."""

    def __init__(self, engine: Companion, turn: Turn, asked: dict[str, Any], cancel: threading.Event, metrics) -> None:
        self.engine, self.turn, self.asked, self.cancel, self.metrics = engine, turn, asked, cancel, metrics
        self.parts: list[str] = []
        self.tokens = 0
        self.finish: FinishReason = "stop"

    def __iter__(self) -> Iterator[str]:
        start = time.perf_counter()
        for piece in self.engine.generate(self.turn, self.asked, cancel=self.cancel):
            if not self.parts:
                self.metrics.first_token.observe(time.perf_counter() - start)
            self.parts.append(piece.text)
            self.tokens += piece.tokens
            self.finish = piece.finish_reason or self.finish
            if piece.text:
                yield piece.text
        self.metrics.tokens.inc(self.tokens)
        if self.cancel.is_set():  # the client left: nobody saw this reply, so it is not kept
            return
        self.engine.finish(self.turn, "".join(self.parts))


def _complete(engine: Companion, turn: Turn, asked: dict[str, Any], cancel: threading.Event, created: int,
              metrics) -> ChatCompletion:
    reply = _Reply(engine, turn, asked, cancel, metrics)
    content = "".join(reply)
    return ChatCompletion(**_head(turn, created), choices=[Choice(message=Reply(content=content),
                                                                  finish_reason=reply.finish)],
                          usage=_usage(turn, reply.tokens))


def _events(engine: Companion, turn: Turn, asked: dict[str, Any], cancel: threading.Event, created: int, include_usage: bool,
            metrics) -> Generator[str, None, None]:
    """Server-sent events as OpenAI sends them: role first, content deltas, finish, [DONE]."""
    head = _head(turn, created)

    def event(delta: Delta, finish: FinishReason | None) -> str:
        chunk = ChatCompletionChunk(**head, choices=[ChunkChoice(delta=delta, finish_reason=finish)])
        return f"data: {chunk.model_dump_json(exclude_none=False)}\n\n"

    yield event(Delta(role="assistant", content=""), None)
    reply = _Reply(engine, turn, asked, cancel, metrics)
    try:
        for text in reply:
            yield event(Delta(content=text), None)
    except Exception:  # the status line is sent already: tell the client in the stream
        log.exception("generation failed in %s", turn.completion_id)
        yield "data: " + json.dumps({"error": {"message": "the model failed while generating this reply",
                                               "type": "server_error", "code": None}}) + "\n\n"
        return
    yield event(Delta(), reply.finish)
    if include_usage:
        usage = ChatCompletionChunk(**head, choices=[], usage=_usage(turn, reply.tokens))
        yield f"data: {usage.model_dump_json()}\n\n"
    yield "data: [DONE]\n\n"
