"""Service settings from environment variables (12-factor); every default is safe for one person
on their own machine: loopback bind, a SQLite file, keys optional only on loopback."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, fields
from pathlib import Path

from bitzero.companion.emotion import EMOTION_FILE


DEFAULT_EMOTION = Path("data/06_models/emotion") / EMOTION_FILE
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
ANY_HOST = "*"


class SettingsError(ValueError):
    """A setting that cannot work as given."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    # A folder of bundle folders with the export stage's champion.json (every bundle is served,
    # the champion by default), or one bundle folder. BITZERO_BUNDLE (the old name) still works.
    bundles: Path = Path("data/06_models/bundles")
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
    max_request_bytes: int = 256 * 1024
    # A reply's length when the request names none; clipped to what the prompt leaves of the context.
    max_tokens_default: int = 256
    # Work one request may cause: characters in (before any tokenizing), seconds of generation,
    # and how many chats may wait for the generation slot before the server says it is saturated.
    max_message_chars: int = 8000
    max_prompt_chars: int = 32000
    max_generation_seconds: int = 120
    max_waiting_chats: int = 8
    # Host names the service answers to, comma-separated, beside the loopback names ("*": any).
    # A web page cannot reach the API by rebinding its own name to 127.0.0.1: its Host is foreign.
    allowed_hosts: str = ""
    memory_limit: int = 5
    retention_sweep_seconds: int = 3600
    persona: str | None = None
    # The vocabulary stage reads every JSONL file in data/01_raw/feedback/ (raw_feedback).
    feedback_export: Path = Path("data/01_raw/feedback/service.jsonl")
    # Ids of training records whose user erased them; the augmentation stage applies it on its next run.
    erasure_ledger: Path = Path("data/01_raw/erasures.jsonl")
    threads: int = 2  # onnxruntime threads of the chat model and of the embedder

    def __post_init__(self) -> None:
        for name in ("bundles", "embedder", "emotion_model", "feedback_export", "erasure_ledger"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, Path(value))
        if self.single_user and not is_loopback(self.host):
            raise SettingsError(
                f"single-user mode (no API keys) is only allowed on a loopback address, not {self.host!r}; "
                "set BITZERO_SINGLE_USER=false and create keys with `bitzero keys create`"
            )
        limits = (self.rate_limit_per_minute, self.max_request_bytes, self.max_tokens_default, self.max_message_chars, self.max_prompt_chars,
                  self.max_generation_seconds, self.max_waiting_chats)
        if min(limits) <= 0:
            raise SettingsError("rate, size, token, character, time and queue limits must be positive")

    @property
    def hosts(self) -> frozenset[str]:
        """The Host names requests may carry: loopback, the bind address, BITZERO_ALLOWED_HOSTS.
        Off single-user mode on a wildcard bind, any (API keys, not names, guard that setup)."""
        extra = {h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()}
        if not self.single_user and not extra and self.host in ("0.0.0.0", "::"):
            return frozenset({ANY_HOST})
        return frozenset({*LOOPBACK_NAMES, self.host.lower(), *extra})

    def emotion_path(self, bundle: Path | None) -> Path:
        """BITZERO_EMOTION_MODEL, else the classifier inside ``bundle`` (the champion's), else the
        pipeline's output."""
        if self.emotion_model is not None:
            return self.emotion_model
        inside = bundle / EMOTION_FILE if bundle is not None else None
        return inside if inside is not None and inside.is_file() else DEFAULT_EMOTION

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """BITZERO_<FIELD> for every field (e.g. BITZERO_DATABASE_URL), then explicit overrides."""
        env = os.environ if environ is None else environ
        if "BITZERO_BUNDLES" not in env and "BITZERO_BUNDLE" in env:  # the single-bundle name of old
            env = {**env, "BITZERO_BUNDLES": env["BITZERO_BUNDLE"]}
        values: dict[str, object] = {}
        for spec in fields(cls):
            raw = env.get(f"BITZERO_{spec.name.upper()}")
            if raw is None:
                continue
            kind = str(spec.type)
            try:
                if "bool" in kind:
                    values[spec.name] = raw.strip().lower() in {"1", "true", "yes", "on"}
                elif "int" in kind:
                    values[spec.name] = int(raw)
                elif "Path" in kind:
                    values[spec.name] = Path(raw)
                else:
                    values[spec.name] = raw
            except ValueError:
                raise SettingsError(f"BITZERO_{spec.name.upper()}={raw!r} is not a valid {kind}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
