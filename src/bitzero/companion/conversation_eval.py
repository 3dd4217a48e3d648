"""The conversation eval's scenarios and scores, judged without a judge model.

Scenarios are data (``scenarios.yaml`` beside this module): scripted user turns, one list per
conversation, a fresh user per scenario. Each reply is scored on text alone: a loop (a 4-word
sequence said 3+ times, or a sentence said twice), garbage (not English-shaped words, or code),
empty, cut off (the token limit hit mid-sentence), recall of what the user told in an earlier
conversation, claiming the user's name as the companion's own, speaking of "the user" (the
system turn's facts read back as an answer), the wrong tone (condolences for good news, cheer for
bad: the scenarios mark such turns' ``tone``), an echo (the message said back), length; and on
topic: the sentence embedder's cosine between message and reply, 0 for an echo (the message said
back is no answer, yet its cosine with itself is 1). ``eval_verdict`` holds the rates against limits: the promotion gate's
second test beside the held-out NLL. Running the scenarios through the service is
``bitzero.service.rehearsal``.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bitzero.companion.embeddings import Embedder
from bitzero.errors import CompanionError

SCENARIOS = Path(__file__).with_name("scenarios.yaml")
LOOP_NGRAM, LOOP_COUNT = 4, 3
_WORD = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)*")
_VOWEL = re.compile(r"[aeiouyAEIOUY]")
_CODE = re.compile(r"```|[{}<>=\\]|\bdef |\bimport |\breturn\b|</?\w+>")  # not ";": English has it too
_SENTENCE = re.compile(r"[^.!?\n]+")
_FINISHED = re.compile(r"[.!?…][\"'”’)*]*\s*$")
_THE_USER = re.compile(r"\bthe user\b", re.IGNORECASE)
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i’m|i've|i’ve|i'd|i’d|me|my)\b", re.IGNORECASE)
_YOU = re.compile(r"\byou(?:r|rs|'re|’re|'ve|’ve|'d|’d)?\b", re.IGNORECASE)
# What a reply must not say to news of that tone: condolences to good news, cheer to bad.
_WRONG_TONE = {
    "positive": re.compile(r"\b(?:sorry|condolences?|your loss|heartbreaking|devastat\w*)\b", re.IGNORECASE),
    "negative": re.compile(r"\b(?:congratulations|congrats|great news|happy for you|how exciting|"
                           r"that'?s (?:wonderful|great|amazing|fantastic))\b", re.IGNORECASE),
}
TONES = tuple(_WRONG_TONE)
# The most frequent English words: running English text is about half these; shuffled word pieces are not.
_COMMON_WORDS = """
a about after all also am an and any are as at be because been but by can could day did do does don't
for from get go good had has have he her here him his how i i'm if in into is it it's just know like
make me more my no not now of on one or our out so some take than that that's the their them then there
they this time to up us very was we well were what when which who will with would you you're your
"""
COMMON = frozenset(_COMMON_WORDS.split())


class ScenarioError(CompanionError, ValueError):
    """A scenarios file that does not say what the eval needs."""


@dataclass(frozen=True)
class Say:
    text: str
    expect_any: tuple[str, ...] = ()  # one of these in the reply: recalled
    tone: str | None = None  # "positive" / "negative" news: the reply must not answer in the other tone


@dataclass(frozen=True)
class Scenario:
    id: str
    conversations: tuple[tuple[Say, ...], ...]
    user_name: str | None = None
    user_likes: tuple[str, ...] = ()  # what the user said they love: never the companion's own


@dataclass(frozen=True)
class Exchange:
    """One user turn and the reply the service gave."""

    scenario: str
    message: str
    reply: str
    finish_reason: str | None
    expect_any: tuple[str, ...] = ()
    user_name: str | None = None
    tone: str | None = None
    user_likes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReplyScore:
    loop: bool
    garbage: bool
    empty: bool
    cut_off: bool
    recalled: bool | None  # None: nothing to recall in this turn
    name_claim: bool
    like_claim: bool
    speaks_of_user: bool
    wrong_tone: bool
    echo: bool
    words: int


@dataclass(frozen=True)
class EvalLimits:
    """Rates a bundle may not exceed (None: not held). The defaults are the issue's goals: loops in
    at most 5% of replies, no garbage, no empty replies."""

    max_loop_rate: float = 0.05
    max_garbage_rate: float = 0.0
    max_empty_rate: float = 0.0
    min_recall_rate: float | None = None
    min_on_topic: float | None = None

    @classmethod
    def of(cls, values: EvalLimits | Mapping[str, Any] | None) -> EvalLimits:
        if values is None or isinstance(values, EvalLimits):
            return values or cls()
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ScenarioError(f"unknown conversation eval limits {sorted(unknown)}; "
                                f"known: {[f.name for f in fields(cls)]}")
        return cls(**values)


def load_scenarios(path: str | Path = SCENARIOS) -> list[Scenario]:
    """The scenarios in a YAML file (``scenarios.yaml`` here by default); a malformed one is a
    ScenarioError naming what is wrong."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        scenarios = [
            Scenario(str(s["id"]), tuple(tuple(Say(str(t["say"]), tuple(str(e) for e in t.get("expect_any", ())),
                                                   t.get("tone"))
                                               for t in conversation) for conversation in s["conversations"]),
                     s.get("user_name"), tuple(str(like) for like in s.get("user_likes", ())))
            for s in data["scenarios"]
        ]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ScenarioError(f"conversation eval scenarios {path} cannot be read: {exc!r}") from exc
    ids = [s.id for s in scenarios]
    if not scenarios or len(set(ids)) != len(ids):
        raise ScenarioError(f"{path} needs at least one scenario and unique ids, got {ids}")
    if any(not c or not all(t.text.strip() for t in c) for s in scenarios for c in s.conversations):
        raise ScenarioError(f"{path}: every conversation needs at least one non-empty user turn")
    tones = {t.tone for s in scenarios for c in s.conversations for t in c} - {None, *TONES}
    if tones:
        raise ScenarioError(f"{path}: unknown tone {sorted(map(str, tones))}; known: {list(TONES)}")
    return scenarios


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def is_loop(text: str) -> bool:
    """A 4-word sequence said 3 or more times, or a sentence of 3+ words said twice."""
    words = _words(text)
    grams = Counter(tuple(words[i : i + LOOP_NGRAM]) for i in range(len(words) - LOOP_NGRAM + 1))
    if grams and max(grams.values()) >= LOOP_COUNT:
        return True
    sentences = Counter(" ".join(_words(s)) for s in _SENTENCE.findall(text) if len(_words(s)) >= 3)
    return bool(sentences) and max(sentences.values()) >= 2


def is_garbage(text: str) -> bool:
    """Not English-shaped: under 80% plain words (letters with a vowel, at most 20 long), code or
    markup, or (from 6 words on) under 15% of the commonest English words, which make about half
    of any English text."""
    tokens = text.split()
    if not tokens:
        return False
    plain = [t for t in tokens if (w := t.strip(".,!?:;\"'()*-–—…“”‘’")) and _WORD.fullmatch(w)
             and len(w) <= 20 and _VOWEL.search(w)]
    if len(plain) < 0.8 * len(tokens) or _CODE.search(text):
        return True
    words = _words(text)
    return len(words) >= 6 and sum(w in COMMON for w in words) < 0.15 * len(words)


def claims_name(text: str, name: str | None) -> bool:
    """The reply says the user's name is its own ("I'm Ada", "my name is Ada", "it's me, Ada")."""
    if not name:
        return False
    return re.search(rf"\b(?:i am|i'm|i’m|my name is|my name's|call me|it's me|it’s me|this is)[,\s]+{re.escape(name)}\b",
                     text, re.IGNORECASE) is not None


def claims_liking(text: str, likes: Sequence[str]) -> bool:
    """A sentence of the reply says the user's liking is the companion's own ("I've been hiking for
    years"): it speaks in the first person, names the liking, and says nothing of "you"."""
    return any(_FIRST_PERSON.search(sentence) and not _YOU.search(sentence)
               and any(like.lower() in sentence.lower() for like in likes)
               for sentence in _SENTENCE.findall(text))


def is_echo(text: str, message: str) -> bool:
    """The reply says the message back: all of its words (3 or more), in order, in one run.
    SmolLM2-135M answered "Nice weather today, isn't it?" with "Nice weather today, isn't it." in
    6 of 8 seeds."""
    said, heard = _words(text), _words(message)
    return len(heard) >= 3 and any(said[i : i + len(heard)] == heard for i in range(len(said) - len(heard) + 1))


def wrong_tone(text: str, tone: str | None) -> bool:
    """Condolences for good news, or cheer for bad (``tone`` is the news', None: not judged)."""
    return tone is not None and _WRONG_TONE[tone].search(text) is not None


def score_reply(exchange: Exchange) -> ReplyScore:
    text = exchange.reply.strip()
    empty = not any(c.isalnum() for c in text)
    claim = claims_name(text, exchange.user_name)
    # Saying the name as its own is no recall of it: "My name is Ada" contains "Ada".
    recalled = (any(e.lower() in text.lower() for e in exchange.expect_any) and not claim
                if exchange.expect_any else None)
    return ReplyScore(
        loop=is_loop(text), garbage=not empty and is_garbage(text), empty=empty,
        cut_off=not empty and exchange.finish_reason == "length" and not _FINISHED.search(text),
        recalled=recalled, name_claim=claim, like_claim=claims_liking(text, exchange.user_likes),
        speaks_of_user=_THE_USER.search(text) is not None, wrong_tone=wrong_tone(text, exchange.tone),
        echo=is_echo(text, exchange.message), words=len(text.split()),
    )


def on_topic(embedder: Embedder, exchanges: Sequence[Exchange], scores: Sequence[ReplyScore]) -> np.ndarray:
    """Cosine between each message and its reply (0 for an empty reply or an echo, as ``scores`` say)."""
    if not exchanges:
        return np.zeros(0, dtype=np.float32)
    vectors = embedder.encode([t for e in exchanges for t in (e.message, e.reply or " ")])
    similarity = (vectors[0::2] * vectors[1::2]).sum(axis=1)
    answered = [bool(e.reply.strip()) and not s.echo for e, s in zip(exchanges, scores, strict=True)]
    return np.where(answered, similarity, 0.0)


def figures(exchanges: Sequence[Exchange], embedder: Embedder) -> dict[str, float]:
    """The eval's headline figures over every reply: rates in [0, 1], on_topic the mean cosine,
    words the median reply length."""
    if not exchanges:
        raise ScenarioError("the conversation eval needs at least one reply to score")
    scores = [score_reply(e) for e in exchanges]
    count = len(scores)

    def rate(name: str) -> float:
        return round(sum(bool(getattr(s, name)) for s in scores) / count, 4)

    recalls = [s.recalled for s in scores if s.recalled is not None]
    return {
        "replies": count,
        "loop_rate": rate("loop"), "garbage_rate": rate("garbage"), "empty_rate": rate("empty"),
        "cut_off_rate": rate("cut_off"),
        "recall_rate": round(sum(recalls) / len(recalls), 4) if recalls else 1.0,
        "name_claim_rate": rate("name_claim"), "like_claim_rate": rate("like_claim"),
        "speaks_of_user_rate": rate("speaks_of_user"),
        "wrong_tone_rate": _wrong_tone_rate(scores, exchanges), "echo_rate": rate("echo"),
        "on_topic": round(float(on_topic(embedder, exchanges, scores).mean()), 4),
        "words_median": float(statistics.median(s.words for s in scores)),
    }


def _wrong_tone_rate(scores: Sequence[ReplyScore], exchanges: Sequence[Exchange]) -> float:
    """Wrong tone among the replies to news with a tone (0 when no turn has one)."""
    judged = [s.wrong_tone for s, e in zip(scores, exchanges, strict=True) if e.tone is not None]
    return round(sum(judged) / len(judged), 4) if judged else 0.0


def eval_verdict(figures: Mapping[str, float], limits: EvalLimits | Mapping[str, Any] | None = None) -> tuple[bool, str]:
    """Whether a bundle's figures are within ``limits``, and why not (every limit broken, named)."""
    held = EvalLimits.of(limits)
    broken = []
    for key, figure in (("max_loop_rate", "loop_rate"), ("max_garbage_rate", "garbage_rate"),
                        ("max_empty_rate", "empty_rate")):
        limit = getattr(held, key)
        if limit is not None and figures[figure] > limit:
            broken.append(f"{figure} {figures[figure]:.3f} > {limit}")
    for key, figure in (("min_recall_rate", "recall_rate"), ("min_on_topic", "on_topic")):
        limit = getattr(held, key)
        if limit is not None and figures[figure] < limit:
            broken.append(f"{figure} {figures[figure]:.3f} < {limit}")
    if broken:
        return False, "conversation eval: " + "; ".join(broken)
    return True, "conversation eval within limits"


def transcript(exchanges: Sequence[Exchange]) -> list[dict[str, Any]]:
    """The exchanges with their scores, for the stage's report."""
    return [{**asdict(e), **asdict(score_reply(e))} for e in exchanges]
