"""The language model in its two roles: chat-formatted prompts, batched KV-cached sampling,
and supervised examples from verified targets.

Prompts use the serving chat format (`<|user|> text <|end|> <|assistant|>`), so what self-play
teaches is what the service later asks. A completion counts as well-formed only if the model
closed its turn with `<|end|>` within the token budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bitzero.model import BitZeroLM
from bitzero.text import Tokenizer
from bitzero.train.batching import Example


@dataclass(frozen=True)
class Completion:
    prompt: tuple[int, ...]
    tokens: tuple[int, ...]
    logprobs: tuple[float, ...]
    text: str
    finished: bool


class Agent:
    """One model + tokenizer; `sample` is the rollout for both roles."""

    def __init__(self, model: BitZeroLM, tokenizer: Tokenizer, batch_size: int = 64, use_cache: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.use_cache = use_cache
        self.stop_ids = (tokenizer.end_id, tokenizer.eos_id)

    @property
    def block_size(self) -> int:
        return self.model.config.block_size

    def prompt_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode_chat([{"role": "user", "content": text}], add_generation_prompt=True)

    def example(self, prompt: str, answer: str, difficulty: float = 0.0) -> Example | None:
        """A supervised example (loss on the answer and its `<|end|>`), None if it does not fit."""
        conversation = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        ids, mask = self.tokenizer.encode_chat_with_mask(conversation)
        if len(ids) > self.block_size + 1:
            return None
        return Example(ids, mask, difficulty)

    def fits(self, prompt: str, max_new_tokens: int) -> bool:
        return len(self.prompt_ids(prompt)) + max_new_tokens <= self.block_size

    def sample(
        self,
        prompts: Sequence[str],
        max_new_tokens: int,
        temperature: float,
        generator: torch.Generator | None = None,
    ) -> list[Completion]:
        """One completion per prompt (repeat a prompt for n samples), in order; prompts too long
        to leave room for `max_new_tokens` give an empty, unfinished completion."""
        encoded = [self.prompt_ids(p) for p in prompts]
        out: list[Completion | None] = [None] * len(prompts)
        room = [i for i, ids in enumerate(encoded) if len(ids) < self.block_size]
        room.sort(key=lambda i: len(encoded[i]))  # similar lengths batch with little padding
        for start in range(0, len(room), self.batch_size):
            chunk = room[start : start + self.batch_size]
            width = max(len(encoded[i]) for i in chunk)
            budget = min(max_new_tokens, self.block_size - width)
            result = self.model.rollout(
                [encoded[i] for i in chunk], budget, temperature=temperature, stop_ids=self.stop_ids,
                use_cache=self.use_cache, generator=generator, pad_id=self.tokenizer.pad_id,
            )
            for row, index in enumerate(chunk):
                keep = result.mask[row]
                tokens = result.tokens[row][keep].tolist()
                logprobs = result.logprobs[row][keep].tolist()
                finished = bool(tokens) and tokens[-1] in self.stop_ids
                body = tokens[:-1] if finished else tokens
                text = self.tokenizer.decode(body, skip_special=True)
                out[index] = Completion(tuple(encoded[index]), tuple(tokens), tuple(logprobs), text, finished)
        return [c if c is not None else Completion(tuple(encoded[i]), (), (), "", False) for i, c in enumerate(out)]
