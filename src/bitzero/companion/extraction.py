"""Memories from what the user says: their name, preferences and facts, each with a slot.

A slot names what a memory is about ("name", "pref:tea", "home"); two memories with the same
slot and different content contradict each other, which consolidation turns into invalidation.
Importance follows Generative Agents' 1-10 scale: identity highest, passing preferences lower.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CATEGORIES = ("fact", "preference", "emotion", "note")


@dataclass(frozen=True)
class Candidate:
    category: str
    slot: str | None
    content: str
    importance: float
    value: str | None = None  # what fills the slot ("Ana" for the name), kept as data beside the sentence


_NAME_WORD = r"[A-Z][\w'\-]{1,30}"
# The first word may be typed in lower case; a second one counts only when capitalised.
_NAME = re.compile(
    rf"\b(?i:my name is|my name's|call me|i am called|i'm called)\s+((?i:{_NAME_WORD})(?:\s+{_NAME_WORD})?)"
)
# "I'm Ana" only when what follows looks like a capitalised name, not "I'm tired".
_IM_NAME = re.compile(rf"^(?i:hi|hello|hey)?[,!.\s]*(?i:i am|i'm)\s+({_NAME_WORD})\s*(?:[.!,]|$)")
_OBJECT = r"([^.,!?;]{2,60}?)"
_END = r"\s*(?:[.,!?;]|\band\b|\bbut\b|$)"
_LIKE = re.compile(rf"\bi (?:really |also |absolutely )?(love|like|enjoy|adore|prefer)\s+{_OBJECT}{_END}", re.IGNORECASE)
_DISLIKE = re.compile(
    rf"\bi (?:really |also )?(hate|dislike|can't stand|cannot stand|don't like|do not like|don't enjoy)\s+{_OBJECT}{_END}",
    re.IGNORECASE,
)
_FAVOURITE = re.compile(rf"\bmy fav(?:ou?rite)\s+([a-z ]{{2,30}}?)\s+is\s+{_OBJECT}{_END}", re.IGNORECASE)
_FACTS = (  # pattern, slot (None: one per distinct value), template over the groups, importance
    (re.compile(rf"\bi live in\s+{_OBJECT}{_END}", re.IGNORECASE), "home", "The user lives in {0}.", 7.0),
    (re.compile(rf"\bi(?:'m| am) from\s+{_OBJECT}{_END}", re.IGNORECASE), "origin", "The user is from {0}.", 6.0),
    (re.compile(rf"\bi work (as|at|for|in)\s+{_OBJECT}{_END}", re.IGNORECASE), "work", "The user works {0} {1}.", 7.0),
    (re.compile(r"\bi(?:'m| am)\s+(\d{1,3})\s+years? old", re.IGNORECASE), "age", "The user is {0} years old.", 6.0),
    (re.compile(rf"\bmy birthday is\s+{_OBJECT}{_END}", re.IGNORECASE), "birthday", "The user's birthday is {0}.", 7.0),
    (re.compile(rf"\bi have (a|an|two|three|\d+)\s+{_OBJECT}{_END}", re.IGNORECASE), None, "The user has {0} {1}.", 5.0),
    (re.compile(rf"\bi(?:'m| am) (a|an)\s+{_OBJECT}{_END}", re.IGNORECASE), "identity", "The user is {0} {1}.", 6.0),
)
_NOT_IDENTITY = re.compile(r"^(?:bit|little|lot|few)\b", re.IGNORECASE)


def _clean(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip(" '\"")


def _slot_key(value: str) -> str:
    words = re.sub(r"[^\w\s]", "", value.lower()).split()
    return " ".join(w for w in words if w not in {"the", "a", "an", "my", "to", "very", "much"})[:150]


_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")


def extract(text: str) -> list[Candidate]:
    """Every memory candidate in one user message, most important first; questions state nothing."""
    found: list[Candidate] = []
    for sentence in _SENTENCE.findall(text):
        if not sentence.strip().endswith("?"):
            found.extend(_from_sentence(sentence.strip()))
    found.sort(key=lambda c: -c.importance)
    return found


def _from_sentence(text: str) -> list[Candidate]:
    found: list[Candidate] = []
    match = _NAME.search(text) or _IM_NAME.search(text.strip())
    if match:
        name = _clean(match.group(1)).title()
        found.append(Candidate("fact", "name", f"The user's name is {name}.", 9.0, name))
    for pattern in (_LIKE, _DISLIKE):
        for verb, obj in pattern.findall(text):
            obj = _clean(obj)
            if not obj or obj.lower() in {"it", "that", "this", "you"}:
                continue
            verb = verb.lower().replace("cannot", "can't").replace("do not", "don't")
            phrase = {"love": "loves", "like": "likes", "enjoy": "enjoys", "adore": "adores",
                      "prefer": "prefers", "hate": "hates", "dislike": "dislikes"}.get(verb, f"{verb}s")
            if verb in {"don't like", "don't enjoy", "can't stand"}:
                phrase = {"don't like": "does not like", "don't enjoy": "does not enjoy",
                          "can't stand": "cannot stand"}[verb]
            importance = 6.0 if verb in {"love", "adore", "hate", "can't stand"} else 5.0
            found.append(Candidate("preference", f"pref:{_slot_key(obj)}", f"The user {phrase} {obj}.", importance, obj))
    for what, value in _FAVOURITE.findall(text):
        what, value = _clean(what).lower(), _clean(value)
        found.append(Candidate("preference", f"favourite:{_slot_key(what)}",
                               f"The user's favourite {what} is {value}.", 6.0, value))
    for pattern, slot, template, importance in _FACTS:
        for match in pattern.finditer(text):
            groups = [_clean(g) for g in match.groups()]
            value = groups[-1]
            if not value or (slot == "identity" and _NOT_IDENTITY.match(value)):
                continue
            groups = [g.lower() if i < len(groups) - 1 else g for i, g in enumerate(groups)]
            found.append(Candidate("fact", slot or f"has:{_slot_key(value)}", template.format(*groups), importance,
                                   value))
    return found
