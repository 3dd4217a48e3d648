"""The request and response bodies of the OpenAI-compatible routes (``routes.openai``): what a
client may send, validated before anything runs, and OpenAI's objects with BitZero's fields added."""

from __future__ import annotations

from typing import Any, Literal

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

from bitzero.service.fields import Text


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


SAMPLING_ASKED = {"temperature", "top_p", "top_k", "frequency_penalty", "presence_penalty", "stop", "seed"}
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

    def asked(self) -> dict[str, Any]:
        """The sampling settings this request names (`bitzero.serving.sampling.Sampling`'s fields)."""
        return self.model_dump(include=SAMPLING_ASKED, exclude_none=True)

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4 or any(not s or len(s) > 64 for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings of at most 64 characters")
        return stops


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
