"""The teacher's tokenizer: Hugging Face ``tokenizers`` (BPE) plus its chat template, torch-free.

One JSON file holds everything the service and the trainers need: the HF ``tokenizer.json``
object, the checkpoint's Jinja chat template, its end-of-turn tokens, and the tokens adaptation
appended. Chat prompts are rendered by the template with placeholders in place of the contents;
the template's own text is encoded with its special tokens, every message's content literally, so
a "<|im_start|>" typed by a user is just characters and can never open a turn. Byte-level BPE
makes encode -> decode lossless for any text.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken
from tokenizers import Tokenizer as HFTokenizer

from bitzero.errors import TextError

__all__ = ["FORMAT", "VERSION", "Tokenizer", "TokenizerError"]

FORMAT = "bitzero-tokenizer"
VERSION = 2
ROLES = ("system", "user", "assistant")
# End-of-turn / end-of-text tokens of the common chat formats; a reply stops at any of them.
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>")
_SLOT = re.compile("\ue000(\\d+)\ue001")  # a message's place in the rendered template
# Adaptation candidates: words with an optional leading space, whitespace runs (indentation)
# and punctuation runs. Digits never join a candidate: arithmetic should see single digits.
_PIECE = re.compile(r" ?[^\W\d]+|\s+|[^\w\s]+")
_REPLACEMENT = "\ufffd"


class TokenizerError(TextError, ValueError):
    """A tokenizer file, chat or token list that cannot be used as it is."""


@lru_cache(maxsize=8)
def _compile_template(source: str) -> Any:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env.from_string(source)


def _raise(message: str) -> None:
    raise TokenizerError(f"chat template: {message}")


class Tokenizer:
    """BPE encoding with a chat template; special tokens come from the template, never from text."""

    def __init__(
        self,
        hf_json: str | Mapping[str, Any],
        chat_template: str,
        eos_token: str,
        added: Sequence[str] = (),
        pad_token: str | None = None,
        bos_token: str | None = None,
    ) -> None:
        source = hf_json if isinstance(hf_json, str) else json.dumps(hf_json)
        try:
            self._template_side = HFTokenizer.from_str(source)
            self._literal = HFTokenizer.from_str(source)
        except Exception as error:  # tokenizers raises a bare Exception on a malformed file
            raise TokenizerError(f"not a Hugging Face tokenizer: {error}") from error
        self._literal.encode_special_tokens = True
        self._hf_json = json.loads(source)
        self.chat_template = chat_template
        _compile_template(chat_template)
        self.eos_token = eos_token
        self.pad_token = pad_token or eos_token
        self.bos_token = bos_token  # what the template writes as ``bos_token`` (Llama 3 opens with it)
        self.added: list[str] = []
        self._base_size = self._template_side.get_vocab_size(with_added_tokens=True)
        if self._template_side.token_to_id(eos_token) is None:
            raise TokenizerError(f"the end-of-turn token {eos_token!r} is not in the vocabulary")
        self._append(list(added))
        self._single: dict[str, bool] = {}

    # -- vocabulary ---------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._template_side.get_vocab_size(with_added_tokens=True)

    @property
    def eos_id(self) -> int:
        return self._known_id(self.eos_token)

    @property
    def pad_id(self) -> int:
        return self._known_id(self.pad_token)

    def _known_id(self, token: str) -> int:
        token_id = self._template_side.token_to_id(token)
        if token_id is None:
            raise TokenizerError(f"the token {token!r} is not in the vocabulary")
        return int(token_id)

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Ids that end a reply: the end-of-turn token and any end-of-text token of the vocabulary."""
        ids = {self.eos_id}
        ids.update(i for t in STOP_TOKENS if (i := self._template_side.token_to_id(t)) is not None)
        return tuple(sorted(ids))

    def id_to_token(self, token_id: int) -> str:
        token = self._template_side.id_to_token(token_id)
        if token is None:
            raise TokenizerError(f"token id {token_id} is outside the vocabulary (size {self.vocab_size})")
        return token

    def knows(self, char: str) -> bool:
        """Whether a character encodes to whole tokens (no token holds only part of its bytes)."""
        known = self._single.get(char)
        if known is None:
            ids = self._literal.encode(char, add_special_tokens=False).ids
            known = all(_REPLACEMENT not in self._literal.decode([i]) for i in ids) or char == _REPLACEMENT
            self._single[char] = known
        return known

    # -- encoding -----------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Ids of plain text; special-token strings inside it are encoded as ordinary characters."""
        return list(self._literal.encode(text, add_special_tokens=False).ids)

    def encode_with_unknown(self, text: str) -> tuple[list[int], int]:
        """Ids of ``text`` and how many of its characters fall back to partial byte tokens."""
        return self.encode(text), sum(1 for c in text if not self.knows(c))

    def render(self, conversation: Sequence[Mapping[str, str]], add_generation_prompt: bool = False) -> str:
        """The chat template's text with a placeholder where each message's content goes."""
        messages = []
        for index, turn in enumerate(conversation):
            role, content = turn.get("role"), turn.get("content")
            if role not in ROLES:
                raise TokenizerError(f"turn {index}: unknown chat role {role!r}; expected one of {ROLES}")
            if not isinstance(content, str):
                raise TokenizerError(f"turn {index}: content must be a string, got {content!r}")
            messages.append({"role": role, "content": f"\ue000{index}\ue001"})
        try:
            # A companion replies directly: a template that can think first (Qwen3) is told not to,
            # so the prompt ends where its trained replies begin, after an empty thinking block.
            return _compile_template(self.chat_template).render(
                messages=messages, add_generation_prompt=add_generation_prompt,
                eos_token=self.eos_token, bos_token=self.bos_token or "", enable_thinking=False,
            )
        except TokenizerError:
            raise
        except Exception as error:  # a template is user-supplied code: name its failure
            raise TokenizerError(f"chat template failed: {error}") from error

    def encode_chat_with_mask(
        self, conversation: Sequence[Mapping[str, str]], add_generation_prompt: bool = False
    ) -> tuple[list[int], list[bool]]:
        """Chat ids and a loss mask: True on assistant contents and the end-of-turn token that
        closes each (so the model learns what to say and when to stop), False on the prompt."""
        rendered = self.render(conversation, add_generation_prompt)
        ids: list[int] = []
        mask: list[bool] = []
        closing = False  # inside the template text right after an assistant message
        position = 0
        for match in _SLOT.finditer(rendered):
            closing = self._template_piece(rendered[position : match.start()], closing, ids, mask)
            index = int(match.group(1))
            turn = conversation[index]
            piece = self.encode(turn["content"])
            ids.extend(piece)
            mask.extend([turn["role"] == "assistant"] * len(piece))
            closing = turn["role"] == "assistant"
            position = match.end()
        self._template_piece(rendered[position:], closing, ids, mask)
        return ids, mask

    def _template_piece(self, text: str, closing: bool, ids: list[int], mask: list[bool]) -> bool:
        """Encode template text; after an assistant message, mark it up to its end-of-turn token."""
        if not text:
            return closing
        piece = self._template_side.encode(text, add_special_tokens=False).ids
        eos = self.eos_id
        for token_id in piece:
            ids.append(token_id)
            mask.append(closing)
            if closing and token_id == eos:
                closing = False
        return False

    def encode_chat(self, conversation: Sequence[Mapping[str, str]], add_generation_prompt: bool = False) -> list[int]:
        """Chat ids; with ``add_generation_prompt`` they end where the assistant's reply begins."""
        return self.encode_chat_with_mask(conversation, add_generation_prompt)[0]

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of ``ids``; bytes that do not form whole characters (a model's guess) become U+FFFD."""
        ids = list(ids)
        size = self.vocab_size
        for token_id in ids:
            if not 0 <= token_id < size:
                raise TokenizerError(f"token id {token_id} is outside the vocabulary (size {size})")
        return self._template_side.decode(ids, skip_special_tokens=skip_special)

    # -- adaptation ---------------------------------------------------------------------------

    def _append(self, tokens: Sequence[str]) -> None:
        for token in tokens:
            if not isinstance(token, str) or not token:
                raise TokenizerError(f"a text token must be a non-empty string, got {token!r}")
            if any("\ud800" <= c <= "\udfff" for c in token):
                raise TokenizerError(f"token {token!r} contains a lone surrogate (not valid Unicode)")
            if token in self._template_side.get_vocab(with_added_tokens=True):
                raise TokenizerError(f"duplicate token {token!r}")
        if tokens:
            new = [AddedToken(t, normalized=False, special=False) for t in tokens]
            for side in (self._template_side, self._literal):
                side.add_tokens(new)
            self.added.extend(tokens)

    def pieces_of(self, token: str) -> list[int]:
        """The ids an appended token was made of (its embedding row starts as their mean)."""
        return list(self._base_literal.encode(token, add_special_tokens=False).ids)

    @cached_property
    def _base_literal(self) -> HFTokenizer:
        """The vocabulary before adaptation, built once (the file is megabytes of JSON)."""
        base = HFTokenizer.from_str(json.dumps(self._hf_json))
        base.encode_special_tokens = True
        return base

    def adapt(self, texts: Iterable[str], min_count: int, max_new_tokens: int, max_len: int) -> list[str]:
        """Append frequent pieces of ``texts`` that split into many tokens; ids never change.

        Candidates are words with their leading space, whitespace runs (indentation) and
        punctuation runs of 2..max_len characters seen more than ``min_count`` times, ranked by
        tokens saved, count x (current tokens - 1); ties go to the smaller string, so the result
        depends on the texts alone. Returns the appended tokens.
        """
        if min_count < 0 or max_new_tokens < 0 or max_len < 1:
            raise TokenizerError(
                f"adapt needs min_count >= 0, max_new_tokens >= 0, max_len >= 1; "
                f"got {min_count}, {max_new_tokens}, {max_len}"
            )
        pieces: Counter[str] = Counter()
        for text in texts:
            pieces.update(_PIECE.findall(text))
        vocab = self._template_side.get_vocab(with_added_tokens=True)
        ranked = sorted(
            (-count * (cost - 1), piece)
            for piece, count in pieces.items()
            if count > min_count and 2 <= len(piece) <= max_len and piece not in vocab
            and (cost := len(self.encode(piece))) > 1
        )
        new = [piece for _, piece in ranked[:max_new_tokens]]
        self._append(new)
        self._single.clear()
        return new

    # -- persistence --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "tokenizer": self._hf_json,
            "chat_template": self.chat_template,
            "eos_token": self.eos_token,
            "pad_token": self.pad_token,
            "bos_token": self.bos_token,
            "added": list(self.added),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tokenizer:
        """Rebuild from ``to_dict`` output, checking format and version."""
        if not isinstance(data, Mapping):
            raise TokenizerError(f"a tokenizer must be a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise TokenizerError(f"not a tokenizer: format is {data.get('format')!r}, expected {FORMAT!r}")
        if data.get("version") != VERSION:
            raise TokenizerError(
                f"tokenizer version {data.get('version')!r} is not supported (this code reads {VERSION})"
            )
        missing = [k for k in ("tokenizer", "chat_template", "eos_token") if not data.get(k)]
        if missing:
            raise TokenizerError(f"tokenizer file lacks {', '.join(missing)}")
        return cls(data["tokenizer"], data["chat_template"], data["eos_token"], data.get("added", ()),
                   data.get("pad_token"), data.get("bos_token"))

    def save(self, path: str | Path) -> Path:
        """Write the JSON file atomically (temp file + rename): readers never see half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.to_dict(), handle, ensure_ascii=False)
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
