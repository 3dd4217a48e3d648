"""The language model in its two roles: chat-templated prompts, batched KV-cached sampling,
and supervised examples from verified targets.

Prompts are rendered by the tokenizer's own chat template (system + user turn, then the
assistant's opening), so what self-play teaches is what the service later asks. A completion
counts as well-formed only if the model closed its turn with a stop id within its token budget.
The agent's context is `max_prompt_tokens` plus a role's token budget, far below the model's
block size: a prompt longer than that is not asked, and an example longer than that is not taught.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bitzero.model import BitZeroLM
from bitzero.selfplay.config import SelfPlayConfig
from bitzero.selfplay.prompts import Chat
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

    def __init__(self, model: BitZeroLM, tokenizer: Tokenizer, batch_size: int = 64, use_cache: bool = True,
                 max_prompt_tokens: int = 256) -> None:
        if max_prompt_tokens >= model.config.block_size:
            raise ValueError(f"max_prompt_tokens={max_prompt_tokens} leaves no room to answer in "
                             f"block_size={model.config.block_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.use_cache = use_cache
        self.max_prompt_tokens = max_prompt_tokens
        self.stop_ids = tokenizer.stop_ids

    def prompt_ids(self, prompt: Chat) -> list[int]:
        return self.tokenizer.encode_chat(prompt, add_generation_prompt=True)

    def fits(self, prompt: Chat) -> bool:
        return len(self.prompt_ids(prompt)) <= self.max_prompt_tokens

    def example(self, prompt: Chat, answer: str, max_new_tokens: int, difficulty: float = 0.0) -> Example | None:
        """A supervised example (loss on the answer and its end-of-turn), None when the prompt or
        the answer exceeds what a rollout would allow: the model must not learn answers it could
        not finish."""
        ids, mask = self.tokenizer.encode_chat_with_mask([*prompt, {"role": "assistant", "content": answer}])
        answer_tokens = sum(mask)
        prompt_tokens = mask.index(True) if answer_tokens else len(ids)
        if prompt_tokens > self.max_prompt_tokens or answer_tokens > max_new_tokens:
            return None
        return Example(ids[: prompt_tokens + answer_tokens], mask[: prompt_tokens + answer_tokens], difficulty)

    def sample(
        self,
        prompts: Sequence[Chat],
        max_new_tokens: int,
        temperature: float,
        generator: torch.Generator | None = None,
    ) -> list[Completion]:
        """One completion per prompt (repeat a prompt for n samples), in order; a prompt over
        `max_prompt_tokens` gives an empty, unfinished completion."""
        encoded = [self.prompt_ids(p) for p in prompts]
        out: list[Completion | None] = [None] * len(prompts)
        room = [i for i, ids in enumerate(encoded) if len(ids) <= self.max_prompt_tokens]
        room.sort(key=lambda i: len(encoded[i]))  # similar lengths batch with little padding
        for start in range(0, len(room), self.batch_size):
            chunk = room[start : start + self.batch_size]
            width = max(len(encoded[i]) for i in chunk)
            budget = min(max_new_tokens, self.model.config.block_size - width)
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


def agent_for(model: BitZeroLM, tokenizer: Tokenizer, cfg: SelfPlayConfig) -> Agent:
    """The agent with the stage's rollout batch and prompt budget."""
    return Agent(model, tokenizer, cfg.rollout_batch, max_prompt_tokens=cfg.max_prompt_tokens)
