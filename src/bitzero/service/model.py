"""What the service needs from a model, as a Protocol; ``BundleRuntime`` (export stage) fits it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from bitzero.text import Tokenizer


class ChatModel(Protocol):
    model_id: str
    context_length: int
    tokenizer: Tokenizer
    provider: str

    def stream(
        self,
        prompt_ids: Sequence[int],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> Iterator[Any]:
        """Chunks with ``text``, ``token_ids`` and ``finish_reason`` (set on the last one only)."""
        ...


def load_bundle(bundle: Path, variant: str, threads: int | None = None) -> ChatModel:
    """The exported model, through onnxruntime (imported here so tests can run without a bundle).
    `threads` caps its thread pool: onnxruntime's default is every core of the host, not the
    container's CPU limit."""
    from bitzero.export.runtime import BundleRuntime

    return BundleRuntime.load(bundle, variant=variant, threads=threads)
