"""The prompt the model sees: persona, the user's name, top memories, emotion, recent turns.

Everything is fitted to the model's context length minus the tokens reserved for the reply:
older turns go first, then the least relevant memories; the newest user turn always stays
(its oldest characters are cut if it alone is too long).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bitzero.text import Tokenizer

# Short on purpose: a character-level model pays one token per character of context.
DEFAULT_PERSONA = "You are BitZero, a kind companion who remembers the user."


def _turn_cost(tokenizer: Tokenizer, content: str) -> int:
    return len(tokenizer.encode(content)) + 2  # role token + content + <|end|>


def system_text(
    persona: str, user_name: str | None, memories: Sequence[str], emotion_note: str | None, client_system: str
) -> str:
    parts = [persona]
    if client_system:
        parts.append(client_system)
    if user_name:
        parts.append(f"The user's name is {user_name}.")
    if memories:
        parts.append("What you remember about the user:\n" + "\n".join(f"- {m}" for m in memories))
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
) -> list[dict[str, str]]:
    """A conversation whose ``encode_chat(..., add_generation_prompt=True)`` fits in ``budget`` tokens."""
    client_system = "\n".join(t["content"] for t in turns if t["role"] == "system")
    dialogue = [dict(role=t["role"], content=t["content"]) for t in turns if t["role"] != "system"]
    if budget < 8:
        raise ValueError(f"a prompt budget of {budget} tokens leaves no room for a conversation")
    kept = list(memories)
    system = system_text(persona, user_name, kept, emotion_note, client_system)
    # The system turn may take at most half the budget; memories are dropped, least relevant first.
    while kept and _turn_cost(tokenizer, system) > budget // 2:
        kept.pop()
        system = system_text(persona, user_name, kept, emotion_note, client_system)
    if _turn_cost(tokenizer, system) > budget // 2:
        system = _tail(tokenizer, system, budget // 2 - 2, keep_head=True)
    room = budget - 1 - _turn_cost(tokenizer, system)
    chosen: list[dict[str, str]] = []
    for turn in reversed(dialogue):
        cost = _turn_cost(tokenizer, turn["content"])
        if cost > room:
            if not chosen:  # the newest turn always stays, cut to fit
                chosen.append({"role": turn["role"], "content": _tail(tokenizer, turn["content"], room - 2)})
            break
        chosen.append(turn)
        room -= cost
    return [{"role": "system", "content": system}, *reversed(chosen)]


def _tail(tokenizer: Tokenizer, text: str, tokens: int, keep_head: bool = False) -> str:
    """The longest end (or start) of ``text`` that encodes to at most ``tokens`` tokens."""
    if tokens <= 0:
        return ""
    low, high = 0, len(text)
    while low < high:  # smallest cut whose remainder fits
        mid = (low + high) // 2
        piece = text[: len(text) - mid] if keep_head else text[mid:]
        if len(tokenizer.encode(piece)) <= tokens:
            high = mid
        else:
            low = mid + 1
    return text[: len(text) - low] if keep_head else text[low:]
