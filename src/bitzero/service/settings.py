"""Service settings from environment variables (12-factor); every default is safe for one person
on their own machine: loopback bind, a SQLite file, keys optional only on loopback."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, fields
from pathlib import Path

from bitzero.companion.emotion import EMOTION_FILE


DEFAULT_EMOTION = Path("data/06_models") / EMOTION_FILE


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
    bundle: Path = Path("data/06_models/bundle")
    variant: str = "nbits"
    database_url: str = "sqlite:///data/companion/bitzero.db"
    embedder: Path = Path("data/06_models/embedder")
    # The emotion classifier: inside the bundle when the export put it there (see emotion_path).
    emotion_model: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # Without a Bearer key, requests act as the single local user; refused off loopback.
    single_user: bool = True
    rate_limit_per_minute: int = 120
    max_request_bytes: int = 256 * 1024
    max_tokens_default: int = 128
    memory_limit: int = 5
    retention_sweep_seconds: int = 3600
    persona: str | None = None
    # The vocabulary stage reads every JSONL file in data/01_raw/feedback/ (raw_feedback).
    feedback_export: Path = Path("data/01_raw/feedback/service.jsonl")
    threads: int = 2  # onnxruntime threads of the chat model and of the embedder

    def __post_init__(self) -> None:
        for name in ("bundle", "embedder", "emotion_model", "feedback_export"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, Path(value))
        if self.single_user and not is_loopback(self.host):
            raise SettingsError(
                f"single-user mode (no API keys) is only allowed on a loopback address, not {self.host!r}; "
                "set BITZERO_SINGLE_USER=false and create keys with `bitzero keys create`"
            )
        if self.rate_limit_per_minute <= 0 or self.max_request_bytes <= 0:
            raise SettingsError("rate limit and request size limit must be positive")

    @property
    def emotion_path(self) -> Path:
        """BITZERO_EMOTION_MODEL, else the classifier inside the bundle, else the pipeline's output."""
        if self.emotion_model is not None:
            return self.emotion_model
        inside = self.bundle / EMOTION_FILE
        return inside if inside.is_file() else DEFAULT_EMOTION

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """BITZERO_<FIELD> for every field (e.g. BITZERO_DATABASE_URL), then explicit overrides."""
        env = os.environ if environ is None else environ
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
