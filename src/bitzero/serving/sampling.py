"""Next-token choice in numpy: greedy, temperature, top-k and top-p (the PyTorch model's semantics)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_sampling(temperature: float, top_p: float) -> None:
    if not temperature >= 0 or not 0.0 < top_p <= 1.0:
        raise ValueError(f"temperature must be >= 0 and top_p in (0, 1], got {temperature} and {top_p}")


def penalize(logits: np.ndarray, counts: dict[int, int], frequency: float, presence: float) -> np.ndarray:
    """OpenAI's penalties on a (vocab,) logit row: minus ``frequency`` per earlier occurrence of a
    token in the reply and ``presence`` once if it occurred at all (a small model's loops break)."""
    if not counts or (frequency == 0 and presence == 0):
        return logits
    ids = np.fromiter(counts, dtype=np.int64, count=len(counts))
    seen = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
    adjusted = logits.astype(np.float32, copy=True)
    adjusted[ids] -= frequency * seen + presence
    return adjusted


class RepeatGuard:
    """Bans a next token that would repeat an ``n``-gram of earlier text (the assistant's earlier
    replies in the conversation) or of the reply so far (``learn`` each token): a small model
    otherwise says its last answer again word for word, or one phrase to the token limit. Shorter
    common phrases stay free. Also bans the last token of each ``barred`` token sequence after the
    rest of it (a phrase the reply must not say, as transformers' ``bad_words_ids``)."""

    def __init__(self, earlier: Sequence[int], n: int, barred: Sequence[Sequence[int]] = ()) -> None:
        self.n = n
        self.next_of: dict[tuple[int, ...], set[int]] = {}
        if n >= 2:
            for i in range(len(earlier) - n + 1):
                self._add(earlier[i : i + n])
        self.barred: dict[tuple[int, ...], set[int]] = {}
        for phrase in barred:
            if phrase:
                self.barred.setdefault(tuple(phrase[:-1]), set()).add(int(phrase[-1]))

    def _add(self, gram: Sequence[int]) -> None:
        self.next_of.setdefault(tuple(gram[:-1]), set()).add(gram[-1])

    def learn(self, reply: Sequence[int]) -> None:
        """Ban the n-gram that the reply's newest token completes."""
        if self.n >= 2 and len(reply) >= self.n:
            self._add(reply[len(reply) - self.n :])

    def apply(self, logits: np.ndarray, sequence: Sequence[int]) -> np.ndarray:
        banned = set(self.next_of.get(tuple(sequence[len(sequence) - self.n + 1 :]), ())) if self.next_of else set()
        for prefix, last in self.barred.items():
            if len(sequence) >= len(prefix) and tuple(sequence[len(sequence) - len(prefix):]) == prefix:
                banned |= last
        if not banned:
            return logits
        adjusted = logits.astype(np.float32, copy=True)
        adjusted[list(banned)] = -np.inf
        return adjusted


def sample_token(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator, top_k: int = 0) -> int:
    """One token id from a (vocab,) logit row; greedy (argmax) when temperature is 0.

    Top-k (0: off) keeps the ``top_k`` most likely tokens, then top-p keeps the smallest set of most likely tokens whose mass reaches ``top_p`` (the top
    token always stays), as bitzero.model.generation.sample_next does.
    """
    check_sampling(temperature, top_p)
    if temperature == 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / temperature
    if 0 < top_k < scaled.shape[0]:
        scaled[scaled < np.partition(scaled, -top_k)[-top_k]] = -np.inf
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        sorted_probs = probs[order]
        drop = np.cumsum(sorted_probs) - sorted_probs >= top_p
        probs = np.zeros_like(probs)
        probs[order[~drop]] = sorted_probs[~drop]
        probs /= probs.sum()
    return int(rng.choice(probs.shape[0], p=probs))
