"""How a reply is decoded when the request does not say: the defaults the conversation eval chose,
per model (a bundle's ``bitzero.json`` "decoding") over the service's own; a request's settings win (``bitzero.serving.sampling.Sampling.over``).

``finished_at`` ends a reply after a number of finished sentences, so a reply stops at the end of
a thought instead of running into the token limit mid-sentence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from bitzero.errors import CompanionError

# A sentence ends at . ! ? or … after a word (not "1." of a list, nor "3.5"), before white space.
_SENTENCE_END = re.compile(r"(?<=[A-Za-z)\]'\"’”])[.!?…]+[\"'”’)]*(?=\s)")


class DecodingError(CompanionError, ValueError):
    """Decoding settings that name unknown fields or impossible values."""


@dataclass(frozen=True)
class Decoding:
    """The service's defaults are the conversation eval's choice on SmolLM2-135M-Instruct's int4
    bundle (benchmarks/conversation_eval_bench.py): against the old ones (temperature 0.7, top-p 1,
    earlier replies' 4-grams only, no sentence stop) loops fell from 43% of replies to none, cut-off
    replies from 36% to none, the median reply from 124 to 33 words. Temperature 0.2 over 0.3 (8
    seeds of 19 replies): on-topic 0.430 vs 0.420, replies in the wrong tone 10% vs 15% (of 17
    replies, before the second-person opening: 0.400 vs 0.390, with 0.1 at 0.394; greedy 0.33)."""

    temperature: float = 0.2
    top_p: float = 0.9
    top_k: int = 0  # 0: every token
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    # No run of this many tokens of the assistant's earlier replies, or of this reply, is said again (0: off).
    repeat_ngram: int = 4
    max_tokens: int = 256
    max_sentences: int = 3  # the reply ends after this many finished sentences (0: at the model's end)
    # On a question about the user, their name and recalled memories' words get this many logits while
    # the model ranks them among its recall_top_k likeliest next tokens (serving.sampling.RecallNudge; 0: off).
    recall_bias: float = 5.0
    recall_top_k: int = 50

    def __post_init__(self) -> None:
        rules = {"temperature": (self.temperature >= 0, ">= 0"), "top_p": (0 < self.top_p <= 1, "in (0, 1]"),
                 "top_k": (self.top_k >= 0, ">= 0"), "max_sentences": (self.max_sentences >= 0, ">= 0"),
                 "repeat_ngram": (self.repeat_ngram == 0 or self.repeat_ngram >= 2, "0 or >= 2"),
                 "max_tokens": (self.max_tokens >= 1, ">= 1"), "recall_bias": (self.recall_bias >= 0, ">= 0"),
                 "recall_top_k": (self.recall_top_k >= 1, ">= 1")}
        broken = [f"{name}={getattr(self, name)!r} (must be {rule})" for name, (ok, rule) in rules.items() if not ok]
        if broken:
            raise DecodingError("impossible decoding settings: " + ", ".join(broken))

    @classmethod
    def of(cls, values: Mapping[str, Any] | None, base: Decoding | None = None) -> Decoding:
        """``base`` (else the defaults) with ``values`` over it; an unknown name is an error."""
        base = base or cls()
        if not values:
            return base
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise DecodingError(f"unknown decoding settings {sorted(unknown)}; known: {[f.name for f in fields(cls)]}")
        return replace(base, **values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def finished_at(text: str, sentences: int) -> int | None:
    """Where ``text`` ends its ``sentences``-th finished sentence (None: not yet, or 0 sentences)."""
    if sentences <= 0:
        return None
    for count, match in enumerate(_SENTENCE_END.finditer(text), start=1):
        if count == sentences:
            return match.end()
    return None
