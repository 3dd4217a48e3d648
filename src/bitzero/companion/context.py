"""The prompt the model sees, through the tokenizer's chat template: one system turn (persona, the
emotion note, the client's own system messages), the companion's recap of what it remembers (the
user's name, top memories) as its own earlier turn, then the conversation's turns.

The recap speaks to the user in the second person ("What I remember about you: your name is Ada.
You love hiking."), in the companion's voice. Measured with the conversation eval's name-and-likes
scenario on SmolLM2-135M-Instruct (5 seeds, 10 recall questions, 15 replies), against the same
facts as a system-turn list in the third person ("Facts about the user: - The user's name is
Ada."): recalled without claiming the name 5/10 vs 4/10, and the reply spoke of "the user" 0/15
vs 4/15 (the list was read back as an answer: "The user loves hiking."). The name claims that
remain ("I'm Ada") are barred at decoding (``own_claims``): 6/15 replies before, 0 after.

Everything is fitted to a token budget (the context minus the room kept for the reply), counted
exactly by encoding the templated chat: older turns go first, then the least relevant memories;
the newest user turn always stays (only when it alone is too long are its oldest characters cut,
after the system text is cut to half the budget and the recap left out).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from bitzero.text import Tokenizer

Chat = list[dict[str, str]]

# Short enough for a 135M model to follow. Measured on SmolLM2-135M-Instruct: a longer persona
# (e.g. "use the user's name") made it answer "I'm Ada".
DEFAULT_PERSONA = (
    "You are BitZero, a warm and caring companion. You listen closely, remember what the user "
    "tells you, and answer kindly in plain, simple English, in a few sentences."
)
RECAP = "What I remember about you:"
# The memory sentences bitzero.companion.extraction writes ("The user loves tea."), turned to the user.
_THE_USERS = re.compile(r"^The user's\b")
_THE_USER_VERB = re.compile(r"^The user (\w+)")
_SECOND_PERSON = {"is": "are", "has": "have", "does": "do", "was": "were"}


def system_text(persona: str, emotion_note: str | None, client_system: str) -> str:
    return "\n".join(part for part in (persona, client_system, emotion_note) if part)


def to_the_user(memory: str) -> str:
    """A memory as said to the user: "The user loves tea." -> "You love tea." (others unchanged)."""
    memory = _THE_USERS.sub("Your", memory)

    def verb(match: re.Match[str]) -> str:
        word = match.group(1)
        if word in _SECOND_PERSON:
            return f"You {_SECOND_PERSON[word]}"
        return f"You {word[:-1] if word.endswith('s') and not word.endswith('ss') else word}"

    return _THE_USER_VERB.sub(verb, memory)


def recap_text(user_name: str | None, memories: Sequence[str]) -> str | None:
    """The companion's turn that recalls the user's name and memories to them (None: nothing to recall)."""
    said = [f"Your name is {user_name}.", *map(to_the_user, memories)] if user_name else list(map(to_the_user, memories))
    return f"{RECAP} {' '.join(said)}" if said else None


def own_claims(user_name: str | None, values: Sequence[str] = ()) -> list[str]:
    """Phrases barred from a reply: the user's name, or what the recalled memories say of the user
    ("hiking", "Porto"), said as the companion's own ("I'm Ada", "I love hiking", "I live in Porto")."""
    names = [f"{lead} {user_name}" for lead in ("I'm", "I am", "My name is", "my name is", "I'm called", "call me")] + [
        f"{lead}, {user_name}" for lead in ("it's me", "It's me")] if user_name else []
    return names + [f"{lead} {value}" for value in values for lead in _OWN_LEADS]


# How a small model says a memory of the user as its own (as in the eval's name scenario: "I love to hike").
_OWN_LEADS = ("I love", "I like", "I enjoy", "I adore", "I prefer", "I've been", "I have been", "I live in",
              "I'm from", "I am from", "I work as", "I work at", "I work for", "I have")


_ABOUT_ME = re.compile(r"\b(?:i|me|my|mine|myself)\b", re.IGNORECASE)
# Words of a memory's value that say nothing about the user ("the", "my"): never nudged.
_FILLER = frozenset({"a", "an", "the", "my", "your", "to", "of", "and", "or", "in", "on", "at", "for", "with",
                     "some", "very", "much", "about"})


def recalled_words(user_name: str | None, values: Sequence[str], per_value: int = 3) -> list[str]:
    """The words a reply may recall (bitzero.serving.sampling.RecallNudge): the user's name and
    up to ``per_value`` content words of each recalled memory's value ("long walks on the beach":
    long, walks, beach)."""
    words = [user_name] if user_name else []
    for value in values:
        words += [w for w in re.findall(r"[\w'-]+", value) if w.lower() not in _FILLER and len(w) > 2][:per_value]
    return list(dict.fromkeys(words))


def asks_about_user(text: str) -> bool:
    """A question in which the user speaks of themself ("What do I love doing?"): the turns whose
    answer is what the companion remembers. Elsewhere the name and the memories' words stay the
    model's to choose: nudged on every turn, the 135M teacher answered "What are you, exactly?" with
    "I've been hiking for a long time" and "I'm a little girl named Ada"."""
    return "?" in text and _ABOUT_ME.search(text) is not None


# A request ("Can you help me plan a trip?") or a call for advice ("What should I do this weekend?") is
# answered by what the companion does or suggests: opened with "You", the teacher said "You can't do it
# without me." to the latter in 4 of 8 seeds. "Can you tell me my name?" asks for a fact.
_REQUEST = re.compile(
    r"\b(?:(?:can|could|would|will)\s+you|please)\b(?!\s+(?:tell|remind)\s+me\b)"
    r"|\b(?:should|shall|might|must|can|could|would)\s+I\b(?!\s+have\b)|n't\s+I\b|\bI\s+should\b|\bsuggest",
    re.IGNORECASE)


def asks_for_a_fact(text: str) -> bool:
    """A question about the user (`asks_about_user`) that is no request nor call for advice: "What
    is my name?" is answered "Your name is Ada." (`answer_opening`)."""
    return asks_about_user(text) and _REQUEST.search(text) is None


def answer_opening(tokenizer: Tokenizer) -> tuple[int, ...]:
    """The first tokens of a second-person answer ("You", "Your") where they carry two characters:
    without them the name led the answer as a greeting ("Ada, I'm glad you're here."), or the
    model answered with a name of its own ("I'm Emily")."""
    firsts = {ids[0] for ids in map(tokenizer.encode, ("You", "Your")) if ids}
    return tuple(sorted(t for t in firsts if len(tokenizer.decode([t]).strip()) >= 2))


def recalled_tokens(tokenizer: Tokenizer, words: Sequence[str]) -> tuple[int, ...]:
    """The first token of each word, with and without a leading space, where it carries two
    characters or the whole word: a bare space or one letter would raise every word that starts so."""
    firsts = {ids[0] for word in words for ids in (tokenizer.encode(word), tokenizer.encode(f" {word}")) if ids}
    return tuple(sorted(t for t in firsts
                        if len(text := tokenizer.decode([t]).strip()) >= 2 or text in words and text))


def build_prompt(
    tokenizer: Tokenizer,
    turns: Sequence[Mapping[str, str]],
    budget: int,
    *,
    persona: str = DEFAULT_PERSONA,
    user_name: str | None = None,
    memories: Sequence[str] = (),
    emotion_note: str | None = None,
) -> Chat:
    """A conversation whose ``encode_chat(..., add_generation_prompt=True)`` is at most ``budget``
    tokens. ``memories`` come most relevant first; the last turn is the user's."""
    client_system = "\n".join(t["content"] for t in turns if t["role"] == "system")
    dialogue = [{"role": t["role"], "content": t["content"]} for t in turns if t["role"] != "system"]
    system = {"role": "system", "content": system_text(persona, emotion_note, client_system)}

    def length(chat: Chat) -> int:
        return len(tokenizer.encode_chat(chat, add_generation_prompt=True))

    for count in range(len(memories), -1, -1):  # least relevant memories go only when no turn fits
        recap = recap_text(user_name, memories[:count])
        head = [system, {"role": "assistant", "content": recap}] if recap else [system]
        def fits(kept: Chat, head: Chat = head) -> bool:
            return length([*head, *kept]) <= budget

        newest = _newest_fitting(dialogue, fits)
        if newest:
            return [*head, *dialogue[-newest:]]
    content = _cut(system["content"], lambda s: length([{"role": "system", "content": s},
                                                            {"role": "user", "content": ""}]) <= budget // 2,
                   keep_head=True, budget=budget)
    cut_system = {"role": "system", "content": content}
    last = _cut(dialogue[-1]["content"], lambda s: length([cut_system, {"role": "user", "content": s}]) <= budget,
                keep_head=False, budget=budget)
    return [cut_system, {"role": "user", "content": last}]


def _newest_fitting(dialogue: Chat, fits: Callable[[Chat], bool]) -> int:
    """How many of the newest turns fit (0: not even the newest); a prompt grows with every turn."""
    low, high = 0, len(dialogue)
    while low < high:
        mid = (low + high + 1) // 2
        if fits(dialogue[-mid:]):
            low = mid
        else:
            high = mid - 1
    return low


def _cut(text: str, fits: Callable[[str], bool], *, keep_head: bool, budget: int) -> str:
    """The longest start (``keep_head``) or end of ``text`` that fits."""
    if not fits(""):
        raise ValueError(f"a prompt budget of {budget} tokens leaves no room for a conversation")
    low, high = 0, len(text)  # characters kept
    while low < high:
        mid = (low + high + 1) // 2
        if fits(text[:mid] if keep_head else text[len(text) - mid:]):
            low = mid
        else:
            high = mid - 1
    return text[:low] if keep_head else text[len(text) - low:]
