"""OpenAI-compatible chat: POST /v1/chat/completions (plain and server-sent events), GET /v1/models."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bitzero.service.chat import ChatError, Companion, Turn
from bitzero.service.deps import companion, current_user

router = APIRouter(prefix="/v1", tags=["openai"])
log = logging.getLogger("bitzero.service")


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The OpenAI fields BitZero honours; unknown OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=500)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    n: int = Field(1, ge=1, le=1)
    conversation_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4 or any(not s or len(s) > 64 for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings of at most 64 characters")
        return stops


def _turns(body: ChatRequest) -> list[dict[str, str]]:
    return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]


@router.get("/models")
def models(request: Request, _: str = Depends(current_user)) -> dict:
    model = companion(request).model
    return {"object": "list", "data": [
        {"id": model.model_id, "object": "model", "created": int(request.app.state.started), "owned_by": "bitzero"}
    ]}


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatRequest, request: Request, user: Annotated[str, Depends(current_user)]
) -> dict | StreamingResponse:
    engine = companion(request)
    if body.model not in (None, "", engine.model.model_id):
        raise HTTPException(404, f"model {body.model!r} is not served here; GET /v1/models lists "
                                 f"{engine.model.model_id!r}")
    max_tokens = body.max_completion_tokens or body.max_tokens or request.app.state.settings.max_tokens_default
    try:
        turn = await run_in_threadpool(engine.prepare, user, _turns(body), max_tokens, body.conversation_id)
    except ChatError as exc:
        raise HTTPException(exc.status, str(exc)) from exc
    options = dict(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                   stop=body.stop or [], seed=body.seed)
    metrics = request.app.state.metrics
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _events(engine, turn, options, created, include_usage, metrics)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return await run_in_threadpool(_complete, engine, turn, options, created, metrics)


def _usage(turn: Turn, tokens: int) -> dict:
    return {"prompt_tokens": len(turn.prompt_ids), "completion_tokens": tokens,
            "total_tokens": len(turn.prompt_ids) + tokens}


def _extras(turn: Turn) -> dict:
    return {"conversation_id": turn.conversation_id,
            "emotion": turn.reading.emotion if turn.reading else None}


class _Reply:
    """Runs a turn's generation, counting tokens and timing the first text; stores the reply at the end."""

    def __init__(self, engine: Companion, turn: Turn, options: dict, metrics) -> None:  # noqa: ANN001
        self.engine, self.turn, self.options, self.metrics = engine, turn, options, metrics
        self.parts: list[str] = []
        self.tokens, self.finish = 0, "stop"

    def __iter__(self) -> Iterator[str]:
        start = time.perf_counter()
        for piece in self.engine.generate(self.turn, **self.options):
            if not self.parts:
                self.metrics.first_token.observe(time.perf_counter() - start)
            self.parts.append(piece.text)
            self.tokens += piece.tokens
            self.finish = piece.finish_reason or self.finish
            if piece.text:
                yield piece.text
        self.metrics.tokens.inc(self.tokens)
        self.engine.finish(self.turn, "".join(self.parts))


def _complete(engine: Companion, turn: Turn, options: dict, created: int, metrics) -> dict:  # noqa: ANN001
    reply = _Reply(engine, turn, options, metrics)
    content = "".join(reply)
    return {
        "id": turn.completion_id, "object": "chat.completion", "created": created, "model": engine.model.model_id,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": reply.finish}],
        "usage": _usage(turn, reply.tokens), **_extras(turn),
    }


def _events(engine: Companion, turn: Turn, options: dict, created: int, include_usage: bool,
            metrics) -> Iterator[str]:  # noqa: ANN001
    """Server-sent events as OpenAI sends them: role first, content deltas, finish, [DONE]."""
    head = {"id": turn.completion_id, "object": "chat.completion.chunk", "created": created,
            "model": engine.model.model_id, **_extras(turn)}

    def event(delta: dict, finish: str | None) -> str:
        return "data: " + json.dumps({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

    yield event({"role": "assistant", "content": ""}, None)
    reply = _Reply(engine, turn, options, metrics)
    try:
        for text in reply:
            yield event({"content": text}, None)
    except Exception:  # noqa: BLE001 - the status line is sent already; tell the client in the stream
        log.exception("generation failed in %s", turn.completion_id)
        yield "data: " + json.dumps({"error": {"message": "the model failed while generating this reply",
                                               "type": "server_error", "code": None}}) + "\n\n"
        return
    yield event({}, reply.finish)
    if include_usage:
        yield "data: " + json.dumps({**head, "choices": [], "usage": _usage(turn, reply.tokens)}) + "\n\n"
    yield "data: [DONE]\n\n"
