"""PPO for the self-play policy: clipped surrogate on advantages, optional KL and entropy.

Per token t of a sampled completion, with ratio = exp(log pi(a_t) - log pi_old(a_t)):

    loss_t = max(-A * ratio, -A * clip(ratio, 1 - eps_low, 1 + eps_high))
             + kl_coef * k3(pi_ref || pi) - entropy_coef * H(pi)

summed over completion tokens and divided by `batch.denominator` (the loop's loss contract, see
bitzero.train.distill), so `Trainer.step` does accumulation, gradient clipping and the update.
Old log-probs are those recorded during the rollout, at the rollout's temperature. k3 is
exp(r) - r - 1 with r = log pi_ref - log pi (unbiased, always >= 0). Gradients reach the ternary
weights through BitLinear's straight-through estimator like any other loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from random import Random

import torch
import torch.nn.functional as F
from torch import nn

from bitzero.model.transformer import IGNORE_INDEX
from bitzero.train.batching import Batch, Example, collate
from bitzero.train.trainer import Trainer


@dataclass(frozen=True)
class Sample:
    """One rollout: prompt ids, the sampled completion ids and their old log-probs, its advantage."""

    prompt: tuple[int, ...]
    completion: tuple[int, ...]
    logprobs: tuple[float, ...]
    advantage: float

    def __post_init__(self) -> None:
        if not self.prompt or not self.completion or len(self.completion) != len(self.logprobs):
            raise ValueError("a sample needs a prompt and one log-prob per completion token")


def ppo_batch(samples: Sequence[Sample], block_size: int, pad_id: int = 0) -> Batch:
    """A padded batch whose targets are the completion tokens, with `old_logprobs` and
    `advantages` in `extras`, aligned with the targets."""
    examples = []
    for sample in samples:
        ids = [*sample.prompt, *sample.completion]
        if len(ids) > block_size + 1:
            raise ValueError(f"sample of {len(ids)} tokens does not fit block_size {block_size}")
        examples.append(Example(ids, [False] * len(sample.prompt) + [True] * len(sample.completion)))
    batch = collate(examples, block_size, pack=False, pad_id=pad_id)
    old = torch.zeros(batch.targets.shape)
    advantages = torch.zeros(batch.targets.shape)
    for row, sample in enumerate(samples):
        start = len(sample.prompt) - 1  # target position of the first completion token
        stop = start + len(sample.completion)
        old[row, start:stop] = torch.tensor(sample.logprobs)
        advantages[row, start:stop] = sample.advantage
    batch.extras = {"old_logprobs": old, "advantages": advantages}
    return batch


class PPOLoss:
    """`loss_fn(model, batch)` for `Trainer.step`; metrics are per-token means like the loss."""

    def __init__(
        self,
        clip_low: float = 0.2,
        clip_high: float = 0.28,
        kl_coef: float = 0.0,
        entropy_coef: float = 0.0,
        reference: nn.Module | None = None,
        temperature: float = 1.0,
    ) -> None:
        if clip_low <= 0 or clip_high <= 0 or temperature <= 0:
            raise ValueError("clip ranges and temperature must be positive")
        if kl_coef > 0 and reference is None:
            raise ValueError("a KL term needs a reference model")
        self.clip_low, self.clip_high = clip_low, clip_high
        self.kl_coef, self.entropy_coef = kl_coef, entropy_coef
        self.temperature = temperature
        self.reference = reference.eval() if reference is not None else None
        if self.reference is not None:
            for p in self.reference.parameters():
                p.requires_grad_(False)

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits, _ = model(batch.idx)
        mask = batch.targets != IGNORE_INDEX
        logp_all = F.log_softmax(logits.float() / self.temperature, dim=-1)
        logp = _gather(logp_all, batch.targets)
        old, advantages = batch.extras["old_logprobs"], batch.extras["advantages"]
        ratio = torch.exp(logp - old)
        unclipped = -advantages * ratio
        clipped = -advantages * ratio.clamp(1.0 - self.clip_low, 1.0 + self.clip_high)
        per_token = torch.maximum(unclipped, clipped)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        denominator = batch.denominator
        pg = (per_token * mask).sum() / denominator
        loss = pg - self.entropy_coef * (entropy * mask).sum() / denominator
        metrics = {
            "policy_loss": pg.detach(),
            "entropy": ((entropy * mask).sum() / denominator).detach(),
            "clip_fraction": (((clipped > unclipped) & mask).float().sum() / denominator).detach(),
            "approx_kl_old": (((old - logp) * mask).sum() / denominator).detach(),
        }
        if self.reference is not None:
            with torch.no_grad():
                ref_logits, _ = self.reference(batch.idx)
                ref_logp = _gather(F.log_softmax(ref_logits.float() / self.temperature, dim=-1), batch.targets)
            log_ratio = ref_logp - logp
            kl = ((torch.exp(log_ratio) - log_ratio - 1.0) * mask).sum() / denominator
            loss = loss + self.kl_coef * kl
            metrics["kl_ref"] = kl.detach()
        return loss, metrics


def _gather(logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    index = targets.clamp(min=0).unsqueeze(-1)
    return logp.gather(-1, index).squeeze(-1)


def ppo_update(
    trainer: Trainer, samples: Sequence[Sample], epochs: int, minibatch_size: int, seed: int = 0, pad_id: int = 0
) -> dict[str, float]:
    """Several epochs of shuffled minibatches over the rollouts; metrics averaged over steps.

    Under torchrun `samples` must be the same global list on every rank (with the same `seed`):
    each global minibatch of `minibatch_size` rows per rank is split between the ranks, and a
    last minibatch too small to give every rank a row is dropped.
    """
    world, rank = trainer.ctx.world_size, trainer.ctx.rank
    if len(samples) < world:
        return {}
    block_size = trainer.model.config.block_size
    r = Random(seed)
    totals: dict[str, float] = {}
    steps = 0
    for _ in range(epochs):
        order = list(range(len(samples)))
        r.shuffle(order)
        for start in range(0, len(order), minibatch_size * world):
            chunk = order[start : start + minibatch_size * world]
            if len(chunk) < world:
                continue
            metrics = trainer.step([ppo_batch([samples[i] for i in chunk[rank::world]], block_size, pad_id)])
            metrics.pop("tokens", None)
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value
            steps += 1
    return {key: value / steps for key, value in totals.items()} | {"updates": float(steps)}
