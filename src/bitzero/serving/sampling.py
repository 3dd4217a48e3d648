"""Next-token choice in numpy: greedy, temperature, top-k and top-p (the PyTorch model's semantics),
and the settings of one reply's sampling (``Sampling``) as every layer passes them on."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np


def check_sampling(temperature: float, top_p: float) -> None:
    if not temperature >= 0 or not 0.0 < top_p <= 1.0:
        raise ValueError(f"temperature must be >= 0 and top_p in (0, 1], got {temperature} and {top_p}")


@dataclass(frozen=True)
class Sampling:
    """How one reply is sampled: greedy by default. The penalties (OpenAI's) count the reply's own
    tokens; with ``repeat_ngram`` >= 2 no ``repeat_ngram``-gram of the earlier replies or of the
    reply so far is said again (`RepeatGuard`); ``stop`` strings end the reply and are never sent."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repeat_ngram: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    recall_bias: float = 0.0  # logits `RecallNudge` adds to a recalled word (0: off)
    recall_top_k: int = 50  # ... while the model ranks it among this many most likely next tokens

    def __post_init__(self) -> None:
        check_sampling(self.temperature, self.top_p)
        if self.top_k < 0 or self.recall_top_k < 1 or not self.recall_bias >= 0:
            raise ValueError(f"top_k must be >= 0, recall_top_k >= 1 and recall_bias >= 0, got {self.top_k}, "
                             f"{self.recall_top_k} and {self.recall_bias}")
        object.__setattr__(self, "stop", tuple(s for s in self.stop if s))

    @classmethod
    def like(cls, defaults: object) -> Sampling:
        """The settings ``defaults`` (a companion ``Decoding``, say) has under these fields' names."""
        return cls(**{f.name: getattr(defaults, f.name) for f in fields(cls) if hasattr(defaults, f.name)})

    def over(self, asked: Mapping[str, Any]) -> Sampling:
        """These settings with a request's own over them (None: not asked); an unknown name is an error."""
        unknown = set(asked) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown sampling settings {sorted(unknown)}")
        return replace(self, **{k: v for k, v in asked.items() if v is not None})


GREEDY = Sampling()


@dataclass(frozen=True)
class Steering:
    """What the conversation tells a reply's sampler beyond its settings: the assistant's ``earlier``
    replies and the user's message (for ``repeat_ngram``), ``barred`` token sequences the reply never completes, the
    first tokens of the words the companion ``recalled`` for it, and the ``opening`` tokens its
    first token is nudged toward before them (`RecallNudge`)."""

    earlier: tuple[int, ...] = ()
    barred: tuple[tuple[int, ...], ...] = ()
    recalled: tuple[int, ...] = ()
    opening: tuple[int, ...] = ()


UNSTEERED = Steering()


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
    rest of it (a phrase the reply must not say, as transformers' ``bad_words_ids``). ``spared``
    tokens are never banned as a repeat (only as a barred phrase): asked "What is my name?" twice,
    the teacher answered "Your name is Emma." the second time when " Ad" after "Your name is" was
    banned as a repeat of its first answer (3 of 4 seeds)."""

    def __init__(self, earlier: Sequence[int], n: int, barred: Sequence[Sequence[int]] = ()) -> None:
        self.n = n
        self.next_of: dict[tuple[int, ...], set[int]] = {}
        if n >= 2:
            for i in range(len(earlier) - n + 1):
                self._add(earlier[i : i + n])
        # Barred phrases by their prefix, filed under the prefix's last token (None: a one-token phrase),
        # so a step looks only at the phrases the sequence's last token could be completing.
        self.barred: dict[int | None, dict[tuple[int, ...], set[int]]] = {}
        for phrase in barred:
            if phrase:
                prefix = tuple(int(t) for t in phrase[:-1])
                self.barred.setdefault(prefix[-1] if prefix else None, {}).setdefault(prefix, set()).add(int(phrase[-1]))

    def _add(self, gram: Sequence[int]) -> None:
        self.next_of.setdefault(tuple(gram[:-1]), set()).add(gram[-1])

    def learn(self, reply: Sequence[int]) -> None:
        """Ban the n-gram that the reply's newest token completes."""
        if self.n >= 2 and len(reply) >= self.n:
            self._add(reply[len(reply) - self.n :])

    def apply(self, logits: np.ndarray, sequence: Sequence[int], spared: Collection[int] = ()) -> np.ndarray:
        repeats = self.next_of.get(tuple(sequence[len(sequence) - self.n + 1 :]), set()) if self.next_of else set()
        banned = repeats.difference(spared)
        for key in (None, sequence[-1] if sequence else None):
            for prefix, last in self.barred.get(key, {}).items():
                if len(sequence) >= len(prefix) and tuple(sequence[len(sequence) - len(prefix):]) == prefix:
                    banned |= last
        if not banned:
            return logits
        adjusted = logits.astype(np.float32, copy=True)
        adjusted[list(banned)] = -np.inf
        return adjusted


class RecallNudge:
    """Adds ``bias`` to the logit of each recalled token while the model already ranks it among its
    ``top_k`` most likely next tokens, until the reply says it. A 135M model reads the recap of what
    it remembers and still answers "What is my name?" with a name of its own; ranked near the top,
    the remembered one wins, and a word the context makes unlikely is never pushed in. Measured on
    SmolLM2-135M-Instruct's int4 bundle (the conversation eval, 5 seeds; bias 5 and top 50, the
    companion's defaults): recall 0.4 -> 1.0, replies claiming the user's liking 4.7% -> 1.2%, on-topic
    0.408 -> 0.394; bias 3 and top 20 recalled 0.8-0.875.

    With ``opening`` tokens, the reply's first token is nudged toward them instead, the recalled
    ones from the second on: nudged from the first token, the name led the reply ("What is my name?"
    -> "Ada, I'm glad you're here.", "What do I love doing?" -> "Ada loves hiking."); opened in the
    second person, "Your name is Ada." and "You love hiking." (8 seeds of 19 replies, temperature
    0.3: on-topic 0.398 -> 0.420, recall 1.0 both). Left to the model, the first token was "I"
    ("I'm Emily", recall 0.875)."""

    def __init__(self, tokens: Sequence[int], bias: float, top_k: int, opening: Sequence[int] = ()) -> None:
        self.waiting = sorted(set(tokens)) if bias > 0 else []
        self.opening = sorted(set(opening)) if bias > 0 else []
        self.bias, self.top_k = bias, top_k

    def apply(self, logits: np.ndarray) -> np.ndarray:
        candidates = self.opening or self.waiting
        near = [t for t in candidates if np.count_nonzero(logits > logits[t]) < self.top_k]
        if not near:
            return logits
        adjusted = logits.astype(np.float32, copy=True)
        adjusted[near] += self.bias
        return adjusted

    def said(self, token: int) -> None:
        self.opening = []
        if token in self.waiting:
            self.waiting.remove(token)


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
        order = _most_likely_first(probs, top_p)
        sorted_probs = probs[order]
        drop = np.cumsum(sorted_probs) - sorted_probs >= top_p
        probs = np.zeros_like(probs)
        probs[order[~drop]] = sorted_probs[~drop]
        probs /= probs.sum()
    # rng.choice(len(probs), p=probs) draws exactly this (numpy's Generator.choice), after checking
    # ``probs`` again: half the time of a sampled token at 49k ids, in every row of every step.
    cdf = np.cumsum(probs)
    cdf /= cdf[-1]
    return int(np.searchsorted(cdf, rng.random(), side="right"))


def _most_likely_first(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Token ids by falling probability (ties by id), at least as far as ``top_p`` of the mass.

    The nucleus is usually a few dozen tokens: the tokens more likely than the ``head``-th are
    sorted alone when their mass reaches ``top_p`` (the same order and the same sums as sorting
    the whole vocabulary, a fifth of a decode step's time at 49k tokens), else everything is."""
    for head in (64, 2048):
        if head >= probs.shape[0]:
            break
        candidates = np.argpartition(-probs, head)[:head]
        above = np.sort(candidates[probs[candidates] > probs[candidates].min()])  # every token over the boundary
        order = above[np.argsort(-probs[above], kind="stable")]
        if order.size and np.cumsum(probs[order])[-1] >= top_p:
            return order
    return np.argsort(-probs, kind="stable")


class Picker:
    """One reply's token choices under its ``Sampling`` and ``Steering``: the recall nudge (on the
    model's own logits), the penalties' counts, the repeat guard (which bans over everything else)
    and the random stream. ``sequence`` is the prompt and the reply so far."""

    def __init__(self, prompt: Sequence[int], sampling: Sampling, steering: Steering = UNSTEERED) -> None:
        self.sampling = sampling
        self.sequence = list(prompt)
        self._start = len(self.sequence)
        self._counts: dict[int, int] = {}
        self._nudge = RecallNudge(steering.recalled, sampling.recall_bias, sampling.recall_top_k, steering.opening)
        self._guard = RepeatGuard(steering.earlier, sampling.repeat_ngram, steering.barred)
        self._rng = np.random.default_rng(sampling.seed)

    def pick(self, logits: np.ndarray) -> int:
        """The next token from the last position's (vocab,) logits; appended to ``sequence``."""
        s = self.sampling
        row = penalize(self._nudge.apply(logits), self._counts, s.frequency_penalty, s.presence_penalty)
        # A recalled word the reply has yet to say may repeat an earlier answer: a remembered fact is the same each time.
        row = self._guard.apply(row, self.sequence, spared=self._nudge.waiting)
        token = sample_token(row, s.temperature, s.top_p, self._rng, s.top_k)
        self._nudge.said(token)
        self._counts[token] = self._counts.get(token, 0) + 1
        self.sequence.append(token)
        self._guard.learn(self.sequence[self._start :])
        return token
