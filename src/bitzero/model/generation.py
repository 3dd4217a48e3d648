"""Decoding pieces: the key/value cache, token sampling, and the rollout result PPO consumes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


class KVCache:
    """Keys and values of every layer, preallocated once so each decode step writes in place."""

    def __init__(self, n_layer: int, max_len: int) -> None:
        self.n_layer = n_layer
        self.max_len = max_len
        self.length = 0
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's (B, H, T, D) keys/values for ``layer``; return all keys/values so far."""
        if self._keys is None:
            b, h, _, d = k.shape
            shape = (self.n_layer, b, h, self.max_len, d)
            self._keys = k.new_zeros(shape)
            self._values = v.new_zeros(shape)
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} > max_len={self.max_len}")
        assert self._values is not None
        self._keys[layer, :, :, self.length : end] = k
        self._values[layer, :, :, self.length : end] = v
        return self._keys[layer, :, :, :end], self._values[layer, :, :, :end]

    def layer(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (B, H, length, D) keys and values stored for ``layer`` (after rotary)."""
        if self._keys is None or self._values is None:
            raise ValueError("the KV cache is empty")
        return self._keys[layer, :, :, : self.length], self._values[layer, :, :, : self.length]

    def advance(self, steps: int) -> None:
        """Called once per forward, after every layer has written its ``steps`` new positions."""
        self.length += steps


@dataclass
class Rollout:
    """Sampled tokens (B, N), their log-probs (B, N), and which positions were produced (B, N).

    A row stops after its first stop id; later positions hold padding, log-prob 0, mask False.
    """

    tokens: torch.Tensor
    logprobs: torch.Tensor
    mask: torch.Tensor

    def sequences(self) -> list[list[int]]:
        return [row[keep].tolist() for row, keep in zip(self.tokens, self.mask, strict=True)]


def sample_next(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row (greedy when temperature is 0) and its log-probability.

    The log-prob is under softmax(logits / temperature) before top-p truncation, so a later
    forward pass at the same temperature reproduces it exactly.
    """
    if temperature < 0 or not 0.0 < top_p <= 1.0:
        raise ValueError("temperature must be >= 0 and top_p in (0, 1]")
    if temperature == 0:
        logp = F.log_softmax(logits, dim=-1)
        choice = logits.argmax(dim=-1)
        return choice, logp.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
    logp = F.log_softmax(logits / temperature, dim=-1)
    probs = logp.exp()
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the top token always stays).
        drop = sorted_probs.cumsum(-1) - sorted_probs >= top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    choice = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return choice, logp.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
