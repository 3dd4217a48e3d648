"""The prompt the model sees, through the tokenizer's chat template: one system turn (persona, the
user's name, top memories, the emotion note, the client's own system messages), then the turns.

Everything is fitted to a token budget (the context minus the room kept for the reply), counted
exactly by encoding the templated chat: older turns go first, then the least relevant memories;
the newest user turn always stays (only when it alone is too long are its oldest characters cut,
after the system text is cut to half the budget).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from bitzero.text import Tokenizer

Chat = list[dict[str, str]]

# Short enough for a 135M model to follow. Measured on SmolLM2-135M-Instruct: a longer persona
# (e.g. "use the user's name") and a name outside the list of facts made it answer "I'm Ada".
DEFAULT_PERSONA = (
    "You are BitZero, a warm and caring companion. You listen closely, remember what the user "
    "tells you, and answer kindly in plain, simple English, in a few sentences."
)


def system_text(
    persona: str, user_name: str | None, memories: Sequence[str], emotion_note: str | None, client_system: str
) -> str:
    parts = [persona]
    if client_system:
        parts.append(client_system)
    facts = [f"The user's name is {user_name}.", *memories] if user_name else list(memories)
    if facts:
        parts.append("Facts about the user:\n" + "\n".join(f"- {fact}" for fact in facts))
    if emotion_note:
        parts.append(emotion_note)
    return "\n".join(parts)


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

    def length(chat: Chat) -> int:
        return len(tokenizer.encode_chat(chat, add_generation_prompt=True))

    def system(kept: Sequence[str]) -> dict[str, str]:
        return {"role": "system", "content": system_text(persona, user_name, kept, emotion_note, client_system)}

    for count in range(len(memories), -1, -1):  # least relevant memories go only when no turn fits
        head = system(memories[:count])
        def fits(kept: Chat, head: dict[str, str] = head) -> bool:
            return length([head, *kept]) <= budget

        newest = _newest_fitting(dialogue, fits)
        if newest:
            return [head, *dialogue[-newest:]]
    content = _cut(system([])["content"], lambda s: length([{"role": "system", "content": s},
                                                            {"role": "user", "content": ""}]) <= budget // 2,
                   keep_head=True, budget=budget)
    head = {"role": "system", "content": content}
    last = _cut(dialogue[-1]["content"], lambda s: length([head, {"role": "user", "content": s}]) <= budget,
                keep_head=False, budget=budget)
    return [head, {"role": "user", "content": last}]


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
