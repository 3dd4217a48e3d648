"""Service settings from environment variables (12-factor, pydantic-settings: BITZERO_<FIELD>);
every default is safe for one person on their own machine: loopback bind, a SQLite file, keys
optional only on loopback. A value that does not parse (``BITZERO_SINGLE_USER=ture``) is an error
that names the variable, never a silent default."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bitzero.companion.decoding import Decoding, DecodingError
from bitzero.companion.emotion import EMOTION_FILE
from bitzero.errors import ServiceError

DEFAULT_EMOTION = Path("data/06_models/emotion") / EMOTION_FILE
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
ANY_HOST = "*"
SETTING = {"max_tokens": "max_tokens_default"}  # the setting behind a decoding field, where the names differ


class SettingsError(ServiceError, ValueError):
    """A setting that cannot work as given."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BITZERO_", frozen=True, extra="forbid")

    # A folder of bundle folders with the export stage's champion.json (every bundle is served,
    # the champion by default), or one bundle folder. BITZERO_BUNDLE (the old name) still works.
    bundles: Path = Field(Path("data/06_models/bundles"),
                          validation_alias=AliasChoices("bundles", "BITZERO_BUNDLES", "BITZERO_BUNDLE"))
    # Used by each bundle that has it; the others load their default variant (bitzero.json).
    variant: str | None = None
    database_url: str = "sqlite:///data/companion/bitzero.db"
    embedder: Path = Path("data/06_models/embedder")
    # The emotion classifier: inside the champion's bundle when the export put it there (see emotion_path).
    emotion_model: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # Without a Bearer key, requests act as the single local user; refused off loopback.
    single_user: bool = True
    rate_limit_per_minute: int = 120
    # Where the rate limit's buckets live: "memory" (each process its own: N replicas allow N times
    # the rate), "database" (shared by every replica), "auto" (database unless it is a SQLite file).
    rate_limit_store: Literal["auto", "memory", "database"] = "auto"
    max_request_bytes: int = 256 * 1024
    # How a reply is decoded where the request does not say and the bundle's bitzero.json has no
    # "decoding" of its own (see bitzero.companion.decoding; chosen by the conversation eval).
    # max_tokens_default is clipped to what the prompt leaves of the context.
    temperature: float = Decoding.temperature
    top_p: float = Decoding.top_p
    top_k: int = Decoding.top_k
    max_tokens_default: int = Decoding.max_tokens
    # No run of this many tokens of the assistant's earlier replies in the conversation, or of the
    # reply itself, is said again (0: off): the 135M models otherwise loop or repeat their last answer.
    repeat_ngram: int = Decoding.repeat_ngram
    max_sentences: int = Decoding.max_sentences  # a reply ends after this many finished sentences (0: off)
    # Work one request may cause: characters in (before any tokenizing), seconds of generation,
    # and how many chats may wait for the generation slot before the server says it is saturated.
    max_message_chars: int = 8000
    max_prompt_chars: int = 32000
    max_generation_seconds: int = 120
    max_waiting_chats: int = 8
    # Chats one user may have admitted at once (generating or waiting): their share of the above.
    max_chats_per_user: int = 2
    # Host names the service answers to, comma-separated, beside the loopback names ("*": any).
    # A web page cannot reach the API by rebinding its own name to 127.0.0.1: its Host is foreign.
    allowed_hosts: str = ""
    # Reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For names the client;
    # empty: none, the peer's address is the client's (what the limit on invalid keys counts by).
    trusted_proxies: str = ""
    memory_limit: int = 5
    retention_sweep_seconds: int = 3600
    persona: str | None = None
    # The vocabulary stage reads every JSONL file in data/01_raw/feedback/ (raw_feedback).
    feedback_export: Path = Path("data/01_raw/feedback/service.jsonl")
    # Ids of training records whose user erased them; the augmentation stage applies it on its next run.
    erasure_ledger: Path = Path("data/01_raw/erasures.jsonl")
    threads: int = 2  # onnxruntime threads of the chat model and of the embedder

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(describe(exc)) from None

    @model_validator(mode="after")
    def _safe(self) -> Settings:
        if self.single_user and not is_loopback(self.host):
            raise ValueError(
                f"single-user mode (no API keys) is only allowed on a loopback address, not {self.host!r}; "
                "set BITZERO_SINGLE_USER=false and create keys with `bitzero keys create`"
            )
        limits = (self.rate_limit_per_minute, self.max_request_bytes, self.max_tokens_default, self.max_message_chars,
                  self.max_prompt_chars, self.max_generation_seconds, self.max_waiting_chats,
                  self.max_chats_per_user)
        if min(limits) <= 0:
            raise ValueError("rate, size, token, character, time and queue limits must be positive")
        try:
            _ = self.decoding
        except DecodingError as exc:  # named as the variables that set them
            raise ValueError(re.sub(r"\b([a-z_]+)=", lambda m: f"BITZERO_{SETTING.get(m[1], m[1]).upper()}=",
                                    str(exc))) from None
        return self

    @property
    def hosts(self) -> frozenset[str]:
        """The Host names requests may carry: loopback, the bind address, BITZERO_ALLOWED_HOSTS.
        Off single-user mode on a wildcard bind, any (API keys, not names, guard that setup)."""
        extra = {h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()}
        if not self.single_user and not extra and self.host in ("0.0.0.0", "::"):
            return frozenset({ANY_HOST})
        return frozenset({*LOOPBACK_NAMES, self.host.lower(), *extra})

    @property
    def trusted_proxy_addresses(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.trusted_proxies.split(",") if p.strip())

    @property
    def shared_rate_limit(self) -> bool:
        """Whether the rate limit's buckets are in the database (one limit across replicas)."""
        if self.rate_limit_store == "auto":
            return not self.database_url.startswith("sqlite")
        return self.rate_limit_store == "database"

    @property
    def decoding(self) -> Decoding:
        return Decoding(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                        max_tokens=self.max_tokens_default, repeat_ngram=self.repeat_ngram,
                        max_sentences=self.max_sentences)

    def emotion_path(self, bundle: Path | None) -> Path:
        """BITZERO_EMOTION_MODEL, else the classifier inside ``bundle`` (the champion's), else the
        pipeline's output."""
        if self.emotion_model is not None:
            return self.emotion_model
        inside = bundle / EMOTION_FILE if bundle is not None else None
        return inside if inside is not None and inside.is_file() else DEFAULT_EMOTION

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes``, validated like the original."""
        return type(self)(**{**self.__dict__, **changes})

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """BITZERO_<FIELD> for every field (e.g. BITZERO_DATABASE_URL), then the overrides not None."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})


def describe(error: ValidationError) -> str:
    """Each problem with the variable it came from: "BITZERO_PORT='eighty': Input should be a valid integer"."""
    lines = []
    for problem in error.errors():
        message = problem["msg"].removeprefix("Value error, ")
        if problem["loc"]:
            name = str(problem["loc"][0]).upper().removeprefix("BITZERO_")
            lines.append(f"BITZERO_{name}={problem['input']!r}: {message}")
        else:
            lines.append(message)
    return "; ".join(lines)
