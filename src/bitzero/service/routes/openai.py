"""OpenAI-compatible chat: POST /v1/chat/completions (plain and server-sent events), GET /v1/models."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    field_validator,
    model_serializer,
    model_validator,
)

from bitzero.service.chat import ChatError, Companion, Lease, Turn
from bitzero.service.deps import Scope, User
from bitzero.service.fields import Text
from bitzero.service.model import UnknownModel
from bitzero.service.settings import Settings
from bitzero.service.state import Chat, ServiceState, State

router = APIRouter(prefix="/v1", tags=["openai"])
log = logging.getLogger("bitzero.service")


class TextPart(BaseModel):
    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer"]
    content: Text | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "logprobs", "top_logprobs",
               "response_format", "logit_bias", "parallel_tool_calls")
IGNORABLE: tuple[object, ...] = (None, False, [], {}, {"type": "text"})  # what asks for nothing, as OpenAI clients send it


class ChatRequest(BaseModel):
    """The OpenAI fields BitZero honours (and top_k). Fields that would change what the reply means
    (tools, log-probabilities, a response format, logit bias) are refused with 400 when they ask for
    anything, never silently ignored; other unknown fields are ignored. A sampling setting left out
    takes the model's default (GET /v1/models, `decoding`)."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=500)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: StrictInt | None = Field(None, ge=0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    max_tokens: StrictInt | None = Field(None, ge=1, le=4096)
    max_completion_tokens: StrictInt | None = Field(None, ge=1, le=4096)
    stop: Text | list[Text] | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    seed: StrictInt | None = Field(None, ge=0, le=2**63 - 1)
    n: StrictInt = Field(1, ge=1, le=1)
    # Ids are made by the server (the first reply carries one); an id the user does not own is 404.
    conversation_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")

    @model_validator(mode="before")
    @classmethod
    def _supported(cls, data: Any) -> Any:
        asked = [name for name in UNSUPPORTED if isinstance(data, dict) and data.get(name) not in IGNORABLE]
        if asked:
            raise ValueError(f"{', '.join(asked)}: not supported by BitZero (plain text replies only)")
        return data

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4 or any(not s or len(s) > 64 for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings of at most 64 characters")
        return stops


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


class ModelCard(BaseModel):
    """OpenAI's model object, plus what a BitZero client needs to choose one."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "bitzero"
    champion: bool = Field(description="answers requests that name no model (the export stage's promotion gate)")
    kind: str | None = Field(description="student (ternary) or teacher")
    variant: str | None = Field(description="the bundle's ONNX variant served")
    context_length: int
    bundle_id: str = Field(description="the bundle's content id (bitzero.json model_id); requests may use it too")
    decoding: dict[str, Any] = Field(description="the sampling settings a request gets where it names none "
                                                 "(a request's own win)")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


FinishReason = Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Reply(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: Reply
    finish_reason: FinishReason


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _present(self, handler: SerializerFunctionWrapHandler) -> dict:
        return {k: v for k, v in handler(self).items() if v is not None}  # OpenAI omits absent delta fields


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None


class BitZeroFields(BaseModel):
    """What BitZero adds to OpenAI's objects (OpenAI clients keep unknown fields)."""

    conversation_id: str | None = Field(description="send it back as `conversation_id` to continue this "
                                                    "conversation (null while conversations are not stored)")
    emotion: str | None = Field(description="the emotion read in the user's last message, if any")


class ChatCompletion(BitZeroFields):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ChatCompletionChunk(BitZeroFields):
    """One server-sent event of a streamed reply: `data: <this JSON>`, the last event `data: [DONE]`."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


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
    options = dict(temperature=body.temperature, top_p=body.top_p, top_k=body.top_k,
                   frequency_penalty=body.frequency_penalty, presence_penalty=body.presence_penalty,
                   stop=body.stop or [], seed=body.seed, cancel=lease.cancel)
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _events(engine, turn, options, created, include_usage, state.metrics)
        return LeasedStream(events, lease, media_type="text/event-stream",
                            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        return await _until_disconnect(request, lease.cancel,
                                       run_in_threadpool(_complete, engine, turn, options, created, state.metrics))
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

    def __init__(self, engine: Companion, turn: Turn, options: dict, metrics) -> None:
        self.engine, self.turn, self.options, self.metrics = engine, turn, options, metrics
        self.parts: list[str] = []
        self.tokens = 0
        self.finish: FinishReason = "stop"

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
        if self.options["cancel"].is_set():  # the client left: nobody saw this reply, so it is not kept
            return
        self.engine.finish(self.turn, "".join(self.parts))


def _complete(engine: Companion, turn: Turn, options: dict, created: int, metrics) -> ChatCompletion:
    reply = _Reply(engine, turn, options, metrics)
    content = "".join(reply)
    return ChatCompletion(**_head(turn, created), choices=[Choice(message=Reply(content=content),
                                                                  finish_reason=reply.finish)],
                          usage=_usage(turn, reply.tokens))


def _events(engine: Companion, turn: Turn, options: dict, created: int, include_usage: bool,
            metrics) -> Generator[str, None, None]:
    """Server-sent events as OpenAI sends them: role first, content deltas, finish, [DONE]."""
    head = _head(turn, created)

    def event(delta: Delta, finish: FinishReason | None) -> str:
        chunk = ChatCompletionChunk(**head, choices=[ChunkChoice(delta=delta, finish_reason=finish)])
        return f"data: {chunk.model_dump_json(exclude_none=False)}\n\n"

    yield event(Delta(role="assistant", content=""), None)
    reply = _Reply(engine, turn, options, metrics)
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
