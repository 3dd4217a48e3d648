"""One chat turn, HTTP-free: remember, notice the emotion, build the prompt, generate, store.

``prepare`` runs in one transaction before generation and ``finish`` in another after it, so a
slow reply never holds a database transaction open.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from bitzero.companion.context import (
    DEFAULT_PERSONA,
    answer_opening,
    asks_about_user,
    asks_for_a_fact,
    build_prompt,
    own_claims,
    recalled_tokens,
    recalled_words,
)
from bitzero.companion.decoding import Decoding, finished_at
from bitzero.companion.embeddings import Embedder
from bitzero.companion.emotion import EmotionDetector, Reading, context_note
from bitzero.companion.extraction import Candidate, extract
from bitzero.errors import ServiceError
from bitzero.service.db import transaction
from bitzero.service.memory_cache import IndexCache
from bitzero.service.model import ModelSet, Served
from bitzero.service.store import UserData
from bitzero.serving.sampling import Sampling, Steering

if TYPE_CHECKING:
    from bitzero.serving.runtime import FinishReason  # a type only: the runtime module imports onnxruntime


class ChatError(ServiceError, ValueError):
    """A request the companion cannot answer as given (becomes a 4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Turn:
    completion_id: str
    user_id: str
    served: Served  # the model that answers
    decoding: Decoding  # the model's defaults (a request's own settings go over them in generate)
    prompt_ids: list[int]
    max_tokens: int  # what was asked (or the default), clipped to the context the prompt leaves
    conversation_id: str | None  # None when the user does not store conversations
    reading: Reading | None
    prompt: list[dict[str, str]] | None = None  # stored with the reply (None: not storable)
    steering: Steering = field(default_factory=Steering)  # earlier replies, barred phrases, recalled words, opening


@dataclass(frozen=True)
class Heard:
    """What one user message says, read before any transaction."""

    text: str
    candidates: list[tuple[Candidate, np.ndarray]]  # memories to record, with their vectors
    vector: np.ndarray  # the message's embedding
    reading: Reading | None
    felt: Reading | None  # the reading when it names an emotion
    feeling: tuple[Candidate, np.ndarray] | None  # the emotion as a memory


@dataclass(frozen=True)
class Recalled:
    """What the store gave back for the turn."""

    conversation_id: str | None  # None when the user does not store conversations
    name: str | None
    memories: list[str]  # most relevant first, the name apart
    keeps_emotions: bool
    values: list[str] = field(default_factory=list)  # what fills the recalled memories' slots ("hiking")


class Lease:
    """One admitted turn: its place among the server's chats, the user's gate, a cancel flag.

    Closed exactly once, by whoever sees the turn end first (the reply finished, the client went
    away, an error): closing sets the flag, so a generation still running stops at its next token."""

    def __init__(self, release: Callable[[], None]) -> None:
        self.cancel = threading.Event()
        self._release: Callable[[], None] | None = release
        self._lock = threading.Lock()

    def close(self) -> None:
        self.cancel.set()
        with self._lock:
            release, self._release = self._release, None
        if release is not None:
            release()


@dataclass(frozen=True)
class Piece:
    text: str
    tokens: int
    finish_reason: FinishReason | None


def reply_room(served: Served, max_tokens: int | None, default: int) -> int:
    """Tokens kept free for the reply while the prompt is fitted: as asked (else the default), but
    at most half the context, so a long reply never squeezes the conversation out; the reply may
    still grow into whatever the prompt leaves. Only a request for more than the context is refused."""
    context = served.model.context_length
    if max_tokens is not None and max_tokens >= context:
        raise ChatError(f"max_tokens={max_tokens} does not fit in the {context}-token context of "
                        f"{served.id}; ask for fewer than {context}")
    return min(max_tokens or default, context // 2)


def storable_prompt(prompt: list[dict[str, str]], unconsented_note: str | None) -> list[dict[str, str]] | None:
    """The prompt to keep with the reply: without an emotion note the user did not consent to
    having remembered (None when a cut system turn holds only part of it)."""
    if unconsented_note is None:
        return prompt
    head, *rest = prompt
    if unconsented_note not in head["content"]:
        return None
    return [{**head, "content": head["content"].replace("\n" + unconsented_note, "")}, *rest]


class Companion:
    def __init__(
        self,
        models: ModelSet,
        embedder: Embedder,
        detector: EmotionDetector | None,
        sessions: sessionmaker[Session],
        memory_cache: IndexCache | None = None,
        *,
        persona: str | None = None,
        decoding: Decoding | None = None,
        memory_limit: int = 5,
        max_seconds: float = 120.0,
    ) -> None:
        self.models, self.embedder, self.detector, self.sessions = models, embedder, detector, sessions
        self.memory_cache = memory_cache
        self.persona = persona or DEFAULT_PERSONA
        self.decoding = decoding or Decoding()
        for served in models:
            self.decoding_for(served)  # a bundle's impossible decoding defaults fail at start, not per request
        self.memory_limit = memory_limit
        self.max_seconds = max_seconds
        # Admitted turns wait here (service.admission) for one of the sequences their model decodes together.
        self._slots = {served.id: threading.Semaphore(served.model.slots) for served in models}

    def decoding_for(self, served: Served) -> Decoding:
        """The service's decoding defaults with the model's own (its bundle's) over them."""
        return Decoding.of(served.decoding, base=self.decoding)

    def prepare(
        self, user_id: str, messages: Sequence[Mapping[str, str]], served: Served, max_tokens: int | None,
        conversation_id: str | None,
    ) -> Turn:
        """The turn to generate: read the message, recall and record in one transaction, build the prompt."""
        if not messages or messages[-1]["role"] != "user":
            raise ChatError("the last message must come from the user (role 'user')")
        heard = self.read(messages[-1]["content"])
        recalled = self.recall_and_record(user_id, heard, conversation_id)
        return self.compose(user_id, messages, served, max_tokens, heard, recalled)

    def read(self, text: str) -> Heard:
        """The model-side work on the message, done before the transaction so the write lock is held briefly."""
        candidates = extract(text)
        vectors = self.embedder.encode([text, *(c.content for c in candidates)])
        reading = self.detector.read(text, vectors[0]) if self.detector is not None else None
        felt = reading if reading is not None and reading.emotion != "neutral" else None  # None: nothing felt
        feeling = None
        if felt is not None:
            memory_note = f"The user felt {felt.emotion} ({felt.intensity}) about: {text[:200]}"
            feeling = (Candidate("emotion", None, memory_note, 4.0 if felt.intensity == "mild" else 6.0),
                       self.embedder.encode([memory_note])[0])
        return Heard(text, list(zip(candidates, vectors[1:], strict=True)), vectors[0], reading, felt, feeling)

    def recall_and_record(self, user_id: str, heard: Heard, conversation_id: str | None) -> Recalled:
        """What the user's privacy settings allow: their memories recalled, the message's new ones
        and the message itself recorded."""
        with transaction(self.sessions) as session:
            data = UserData(session, user_id, self.memory_cache)
            privacy = data.privacy()
            conversation = None
            if privacy.store_conversations:
                conversation = data.conversation(conversation_id)
                if conversation is None:
                    raise ChatError(f"conversation {conversation_id!r} not found", status=404)
            if privacy.extract_personal_info:
                for candidate, vector in heard.candidates:
                    data.remember(candidate, vector)
            if heard.feeling is not None and privacy.remember_emotions:
                data.remember(*heard.feeling)
            found = [row for row, _ in data.search(heard.vector, self.memory_limit + 1)
                     if row.slot != "name"][: self.memory_limit]
            if conversation is not None:
                felt = heard.felt.emotion if heard.felt is not None and privacy.remember_emotions else None
                data.add_message(conversation.id, "user", heard.text, emotion=felt)
            return Recalled(conversation.id if conversation is not None else None, data.name(),
                            [row.content for row in found], privacy.remember_emotions,
                            [row.value for row in found if row.value])

    def compose(
        self, user_id: str, messages: Sequence[Mapping[str, str]], served: Served, max_tokens: int | None,
        heard: Heard, recalled: Recalled,
    ) -> Turn:
        """The prompt fitted to the model's context, and the turn that generates from it."""
        model = served.model
        decoding = self.decoding_for(served)
        budget = model.context_length - reply_room(served, max_tokens, decoding.max_tokens)
        note = context_note(heard.felt) if heard.felt is not None else None
        prompt = build_prompt(model.tokenizer, messages, budget, persona=self.persona, user_name=recalled.name,
                              memories=recalled.memories, emotion_note=note)
        prompt_ids = model.tokenizer.encode_chat(prompt, add_generation_prompt=True)
        recalls = (recalled_tokens(model.tokenizer, recalled_words(recalled.name, recalled.values))
                   if asks_about_user(heard.text) else ())
        opening = answer_opening(model.tokenizer) if recalls and asks_for_a_fact(heard.text) else ()
        return Turn(
            completion_id=f"chatcmpl-{uuid.uuid4().hex}", user_id=user_id, served=served, decoding=decoding,
            prompt_ids=prompt_ids,
            max_tokens=min(max_tokens or decoding.max_tokens, model.context_length - len(prompt_ids)),
            conversation_id=recalled.conversation_id,
            reading=heard.reading,
            prompt=storable_prompt(prompt, None if recalled.keeps_emotions else note),
            steering=Steering(
                # The assistant's earlier replies, and the message itself: said back, it is no answer (SmolLM2-135M
                # answered "Nice weather today, isn't it?" with itself in 6 of 8 seeds; with it, in none).
                earlier=tuple(i for text in [*(m["content"] for m in messages if m["role"] == "assistant"), heard.text]
                              if decoding.repeat_ngram >= 2 for i in model.tokenizer.encode(text)),
                barred=tuple(tuple(model.tokenizer.encode(text)) for phrase in own_claims(recalled.name, recalled.values)
                             for text in (phrase, f" {phrase}")),
                recalled=recalls, opening=opening,
            ),
        )

    def generate(
        self, turn: Turn, asked: Mapping[str, Any] | None = None, *, cancel: threading.Event | None = None,
    ) -> Iterator[Piece]:
        """The reply in the model's chunks, sampled with the request's ``asked`` settings (`Sampling`'s
        names; None: the default) over the model's defaults. Nothing is glued before them: a fixed
        empathetic opening per emotion left the conversation eval's figures unchanged and misfired
        on questions ("What do I love doing?" -> "That's wonderful, I'm really happy for you!"); the
        emotion reaches the reply through the system turn's note instead.

        Ends after the defaults' ``max_sentences`` finished sentences (finish reason "stop"), as
        soon as ``cancel`` is set (the client left), waiting for a slot included, and after
        ``max_seconds`` of generation (finish reason "length"); the slot is free the moment it stops."""
        cancel = cancel or threading.Event()
        sampling = Sampling.like(turn.decoding).over(asked or {})
        slots = self._slots[turn.served.id]
        while not slots.acquire(timeout=0.1):
            if cancel.is_set():
                return
        try:
            deadline = time.monotonic() + self.max_seconds
            stream = turn.served.model.stream(turn.prompt_ids, max_tokens=turn.max_tokens, sampling=sampling,
                                              steering=turn.steering)
            said = ""
            try:
                for chunk in stream:
                    if cancel.is_set():
                        return
                    if time.monotonic() > deadline:
                        yield Piece("", 0, "length")
                        return
                    end = finished_at(said + chunk.text, turn.decoding.max_sentences)
                    if end is not None:
                        yield Piece(chunk.text[: max(end - len(said), 0)], len(chunk.token_ids), "stop")
                        return
                    said += chunk.text
                    yield Piece(chunk.text, len(chunk.token_ids), chunk.finish_reason)
            finally:
                getattr(stream, "close", lambda: None)()  # a generator's own cleanup, now, not at GC
        finally:
            slots.release()

    def finish(self, turn: Turn, reply: str) -> None:
        if turn.conversation_id is None:
            return
        with transaction(self.sessions) as session:
            UserData(session, turn.user_id).add_message(turn.conversation_id, "assistant", reply,
                                                        message_id=turn.completion_id, prompt=turn.prompt)
