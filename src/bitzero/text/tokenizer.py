"""A character tokenizer with code subwords, byte fallback and append-only adaptation.

Layout of ids (fixed, so checkpoints stay loadable): 8 special tokens, 256 byte tokens, then
"text tokens" (characters, subwords, adapted sequences) that are matched against text
longest-first through a trie. A character outside the vocabulary becomes its UTF-8 bytes, so
encode -> decode is the identity for any string, and special tokens can never be produced from
text (a literal "<|user|>" in a message is just characters). Pure Python, no torch: the
serving path uses it too.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from .alphabet import BASE_CHARACTERS, BASE_SUBWORDS, BYTE_TOKENS, SPECIAL_TOKENS

__all__ = ["FORMAT", "VERSION", "Tokenizer", "TokenizerError"]

FORMAT = "bitzero-tokenizer"
VERSION = 1
BYTE_OFFSET = len(SPECIAL_TOKENS)
TEXT_OFFSET = BYTE_OFFSET + len(BYTE_TOKENS)
ROLES = ("system", "user", "assistant")
_END = ""  # trie key of a node's token id: no character is the empty string
# Adaptation candidates: words with an optional leading space, whitespace runs (indentation)
# and punctuation runs. Digits never join a candidate: arithmetic should see single digits.
_PIECE = re.compile(r" ?[^\W\d]+|\s+|[^\w\s]+")


class TokenizerError(ValueError):
    """A tokenizer file or token list that cannot be used as it is."""


def _is_surrogate(char: str) -> bool:
    return "\ud800" <= char <= "\udfff"


def _bytes_to_text(data: bytearray) -> str:
    """Bytes from the fallback tokens; invalid sequences (a model's guess) become U+FFFD."""
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace")


class Tokenizer:
    """Longest-first trie tokenizer over a fixed special/byte block and appendable text tokens.

    Invariant: every character of a multi-character token is itself a token, so a character is
    encoded via bytes exactly when ``knows(char)`` is False (the vocabulary check relies on it).
    """

    def __init__(self, text_tokens: Iterable[str] = ()) -> None:
        self._tokens: list[str] = [*SPECIAL_TOKENS, *BYTE_TOKENS]
        self._ids: dict[str, int] = {}
        self._root: dict[str, Any] = {}
        for token in text_tokens:
            self._append(token)

    @classmethod
    def default(cls) -> Tokenizer:
        """The base vocabulary: specials, bytes, characters, then code/math subwords."""
        return cls([*BASE_CHARACTERS, *BASE_SUBWORDS])

    # -- vocabulary ---------------------------------------------------------------------------

    def _append(self, token: str) -> int:
        if not isinstance(token, str) or not token:
            raise TokenizerError(f"a text token must be a non-empty string, got {token!r}")
        if token in self._ids:
            raise TokenizerError(f"duplicate token {token!r}")
        if any(_is_surrogate(c) for c in token):
            raise TokenizerError(f"token {token!r} contains a lone surrogate (not valid Unicode)")
        if len(token) > 1 and any(c not in self._root for c in token):
            missing = sorted({c for c in token if c not in self._root})
            raise TokenizerError(f"token {token!r} uses characters that are not tokens: {missing!r}")
        token_id = len(self._tokens)
        self._tokens.append(token)
        self._ids[token] = token_id
        node = self._root
        for char in token:
            node = node.setdefault(char, {})
        node[_END] = token_id
        return token_id

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def tokens(self) -> tuple[str, ...]:
        """Every token string in id order (specials and byte tokens included)."""
        return tuple(self._tokens)

    def knows(self, char: str) -> bool:
        """Whether a character is encoded directly rather than through byte fallback."""
        return char in self._root

    def token_id(self, token: str) -> int:
        """The id of a text token (never a special or byte token: those are not text)."""
        try:
            return self._ids[token]
        except KeyError:
            raise TokenizerError(f"{token!r} is not a text token of this vocabulary") from None

    pad_id = property(lambda self: 0, doc="Padding.")
    unk_id = property(lambda self: 1, doc="Reserved; byte fallback means encode never emits it.")
    bos_id = property(lambda self: 2, doc="Beginning of sequence.")
    eos_id = property(lambda self: 3, doc="End of sequence.")
    system_id = property(lambda self: 4, doc="Opens a system turn.")
    user_id = property(lambda self: 5, doc="Opens a user turn.")
    assistant_id = property(lambda self: 6, doc="Opens an assistant turn.")
    end_id = property(lambda self: 7, doc="Closes every turn.")

    def role_id(self, role: str) -> int:
        """The token opening a turn of ``role`` ("system", "user" or "assistant")."""
        if role not in ROLES:
            raise TokenizerError(f"unknown chat role {role!r}; expected one of {ROLES}")
        return self.system_id + ROLES.index(role)

    # -- encoding -----------------------------------------------------------------------------

    def _encode_into(self, text: str, ids: list[int]) -> int:
        """Append the ids of ``text`` to ``ids``; return how many characters fell back to bytes."""
        root_get = self._root.get
        append = ids.append
        unknown = 0
        i, n = 0, len(text)
        while i < n:
            node = root_get(text[i])
            if node is None:
                ids.extend(BYTE_OFFSET + b for b in text[i].encode("utf-8", "surrogatepass"))
                unknown += 1
                i += 1
                continue
            best, i, j = node[_END], i + 1, i + 1
            while j < n:
                node = node.get(text[j])
                if node is None:
                    break
                j += 1
                if _END in node:
                    best, i = node[_END], j
            append(best)
        return unknown

    def encode_with_unknown(
        self, text: str, bos: bool = False, eos: bool = False
    ) -> tuple[list[int], int]:
        """Ids of ``text`` and the number of its characters encoded through byte fallback."""
        ids = [self.bos_id] if bos else []
        unknown = self._encode_into(text, ids)
        if eos:
            ids.append(self.eos_id)
        return ids, unknown

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        return self.encode_with_unknown(text, bos, eos)[0]

    def encode_chat_with_mask(
        self, conversation: Sequence[Mapping[str, str]], add_generation_prompt: bool = False
    ) -> tuple[list[int], list[bool]]:
        """Chat ids (``<|role|> content <|end|>`` per turn) and a loss mask.

        The mask is True on assistant content and its closing ``<|end|>`` (so the model learns
        what to say and when to stop), False on everything the prompt already gives.
        """
        ids: list[int] = []
        mask: list[bool] = []
        for index, turn in enumerate(conversation):
            role, content = turn.get("role"), turn.get("content")
            if not isinstance(content, str):
                raise TokenizerError(f"turn {index}: content must be a string, got {content!r}")
            ids.append(self.role_id(role))  # type: ignore[arg-type]
            start = len(ids)
            self._encode_into(content, ids)
            ids.append(self.end_id)
            mask.append(False)
            mask.extend([role == "assistant"] * (len(ids) - start))
        if add_generation_prompt:
            ids.append(self.assistant_id)
            mask.append(False)
        return ids, mask

    def encode_chat(
        self, conversation: Sequence[Mapping[str, str]], add_generation_prompt: bool = False
    ) -> list[int]:
        """Chat ids; with ``add_generation_prompt`` they end in ``<|assistant|>`` for generation."""
        return self.encode_chat_with_mask(conversation, add_generation_prompt)[0]

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of ``ids``; consecutive byte tokens are joined and decoded as UTF-8."""
        tokens = self._tokens
        size = len(tokens)
        parts: list[str] = []
        pending = bytearray()
        for token_id in ids:
            if TEXT_OFFSET <= token_id < size:
                if pending:
                    parts.append(_bytes_to_text(pending))
                    pending.clear()
                parts.append(tokens[token_id])
            elif BYTE_OFFSET <= token_id < TEXT_OFFSET:
                pending.append(token_id - BYTE_OFFSET)
            elif 0 <= token_id < BYTE_OFFSET:
                if pending:
                    parts.append(_bytes_to_text(pending))
                    pending.clear()
                if not skip_special:
                    parts.append(tokens[token_id])
            else:
                raise TokenizerError(f"token id {token_id} is outside the vocabulary (size {size})")
        if pending:
            parts.append(_bytes_to_text(pending))
        return "".join(parts)

    # -- adaptation ---------------------------------------------------------------------------

    def adapt(
        self, texts: Iterable[str], min_count: int, max_new_tokens: int, max_len: int
    ) -> list[str]:
        """Append frequent sequences of ``texts`` as new tokens; existing ids never change.

        First characters that would fall back to bytes, most frequent first; then pieces of
        2..max_len characters (a word with its leading space, a whitespace run such as an
        indentation, a punctuation run) ranked by tokens saved, count x (current tokens - 1).
        Only sequences seen more than ``min_count`` times qualify; ties go to the smaller string,
        so the result depends on the texts alone. Returns the appended tokens.
        """
        if min_count < 0 or max_new_tokens < 0 or max_len < 1:
            raise TokenizerError(
                f"adapt needs min_count >= 0, max_new_tokens >= 0, max_len >= 1; "
                f"got {min_count}, {max_new_tokens}, {max_len}"
            )
        chars: Counter[str] = Counter()
        pieces: Counter[str] = Counter()
        for text in texts:
            chars.update(text)
            pieces.update(_PIECE.findall(text))
        new_chars = sorted(
            (c for c, n in chars.items() if n > min_count and not self.knows(c) and not _is_surrogate(c)),
            key=lambda c: (-chars[c], c),
        )[:max_new_tokens]
        for char in new_chars:
            self._append(char)
        ranked = sorted(
            (-n * (len(self.encode(piece)) - 1), piece)
            for piece, n in pieces.items()
            if n > min_count and 2 <= len(piece) <= max_len and piece not in self._ids
            and all(c in self._root for c in piece)
        )
        new_pieces = [piece for _, piece in ranked[: max_new_tokens - len(new_chars)]]
        for piece in new_pieces:
            self._append(piece)
        return new_chars + new_pieces

    # -- persistence --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "tokens": list(self._tokens)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tokenizer:
        """Rebuild from ``to_dict`` output, checking format, version and the fixed id block."""
        if not isinstance(data, Mapping):
            raise TokenizerError(f"a tokenizer must be a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise TokenizerError(f"not a tokenizer: format is {data.get('format')!r}, expected {FORMAT!r}")
        if data.get("version") != VERSION:
            raise TokenizerError(
                f"tokenizer version {data.get('version')!r} is not supported (this code reads {VERSION})"
            )
        tokens = data.get("tokens")
        if not isinstance(tokens, list):
            raise TokenizerError("tokenizer has no 'tokens' list")
        fixed = [*SPECIAL_TOKENS, *BYTE_TOKENS]
        if tokens[:TEXT_OFFSET] != fixed:
            raise TokenizerError(
                f"the first {TEXT_OFFSET} tokens must be the special and byte tokens in their fixed order"
            )
        return cls(tokens[TEXT_OFFSET:])

    def save(self, path: str | Path) -> Path:
        """Write the JSON file atomically (temp file + rename): readers never see half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.to_dict(), handle, ensure_ascii=False, indent=1)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o644)
            os.replace(temp, path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as error:
            raise TokenizerError(f"cannot read tokenizer file {path}: {error}") from error
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise TokenizerError(f"tokenizer file {path} is not valid UTF-8 JSON: {error}") from error
        try:
            return cls.from_dict(data)
        except TokenizerError as error:
            raise TokenizerError(f"tokenizer file {path}: {error}") from error
