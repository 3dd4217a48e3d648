"""Direct Preference Optimization on users' feedback pairs, with a guard on held-out NLL.

DPO (Rafailov et al. 2023) raises the policy's log-ratio to a frozen reference (the model before
this step) on the chosen reply over the rejected one: ``-log σ(β·[(π_c - ref_c) - (π_r - ref_r)])``,
log-probs summed over the reply's tokens (its content and closing end-of-turn token). A
thumbs-down without a correction has no chosen reply: its pair keeps only the rejected side,
``-log σ(-β·(π_r - ref_r))``, which lowers that reply's likelihood relative to the reference and
stops pushing once it is well below it (unlike plain unlikelihood, it cannot diverge).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bitzero.config import check_keys
from bitzero.data.feedback import PreferencePair
from bitzero.data.mix import split_position
from bitzero.model.transformer import IGNORE_INDEX, BitZeroLM
from bitzero.text import Tokenizer
from bitzero.train.batching import Batch, Example, collate
from bitzero.train.config import TrainConfig
from bitzero.train.ddp import DistContext, resolve_device
from bitzero.train.heldout import held_out_nll
from bitzero.train.trainer import Trainer

Chat = list[dict[str, str]]


@dataclass
class DPOConfig:
    beta: float = 0.1
    lr: float = 1e-5
    steps: int = 20
    batch_size: int = 4  # pairs per optimizer step
    heldout_fraction: float = 0.25  # of the pairs, by id: measured, never trained on
    nll_tolerance: float = 0.05  # nats/token the held-out conversation NLL may worsen
    nll_conversations: int = 16  # validation conversations scored for that NLL
    seq_len: int | None = None  # tokens per sequence (the reply is at the end and kept); None: the context
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.lr <= 0 or self.steps < 1 or self.batch_size < 1:
            raise ValueError("beta, lr, steps and batch_size must be positive")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DPOConfig:
        check_keys(cls, values, "personalize")
        return cls(**values)


@dataclass(frozen=True)
class EncodedPair:
    chosen: Example | None
    rejected: Example


def split_pairs(pairs: Sequence[PreferencePair], heldout_fraction: float, seed: int
                ) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, held-out) by each pair's id: a pair stays on its side as more feedback arrives."""
    heldout = [p for p in pairs if split_position(p.id, seed) < heldout_fraction]
    return [p for p in pairs if p not in heldout], heldout


def encode_reply(tokenizer: Tokenizer, prompt: Chat, reply: str) -> Example:
    """The templated prompt + reply; the loss mask covers only this reply (not earlier assistant turns)."""
    ids, mask = tokenizer.encode_chat_with_mask([*prompt, {"role": "assistant", "content": reply}])
    start = len(tokenizer.encode_chat(prompt, add_generation_prompt=True))
    return Example(ids, [m and i >= start for i, m in enumerate(mask)])


def encode_pairs(tokenizer: Tokenizer, pairs: Sequence[PreferencePair]) -> list[EncodedPair]:
    return [EncodedPair(encode_reply(tokenizer, p.prompt, p.chosen) if p.chosen is not None else None,
                        encode_reply(tokenizer, p.prompt, p.rejected)) for p in pairs]


def pair_batch(pairs: Sequence[EncodedPair], block_size: int, pad_id: int) -> Batch:
    """Rows 0..B-1 the chosen replies, B..2B-1 the rejected ones; a missing chosen reply is the
    rejected row with no targets (log-prob 0), flagged by ``extras["has_chosen"]``."""
    chosen = [p.chosen or Example(p.rejected.ids, [False] * len(p.rejected.ids)) for p in pairs]
    batch = collate([*chosen, *(p.rejected for p in pairs)], block_size, pad_id=pad_id)
    batch.extras["has_chosen"] = torch.tensor([p.chosen is not None for p in pairs], dtype=torch.float32)
    return batch


def sequence_logps(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Each row's log-probability of its target tokens, summed (nats)."""
    logits, _ = model(batch.idx)
    logp = F.log_softmax(logits.float(), dim=-1).gather(-1, batch.targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logp * (batch.targets != IGNORE_INDEX)).sum(-1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, has_chosen: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-pair loss; where ``has_chosen`` is 0 only the rejected side counts."""
    margin = has_chosen * (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin)


class DPOLoss:
    """`loss_fn(model, batch)` for `Trainer.step`: the reference's log-probs come in ``extras``."""

    def __init__(self, beta: float) -> None:
        self.beta = beta

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        policy = sequence_logps(model, batch).view(2, -1)
        ref = batch.extras["ref_logps"].view(2, -1)
        has_chosen = batch.extras["has_chosen"]
        losses = dpo_loss(policy[0], policy[1], ref[0], ref[1], has_chosen, self.beta)
        margin = (policy[0] - ref[0]) * has_chosen - (policy[1] - ref[1])
        return losses.mean(), {"reward_margin": (self.beta * margin).mean().detach()}


@torch.no_grad()
def pair_logps(model: nn.Module, pairs: Sequence[EncodedPair], block_size: int, pad_id: int,
               batch_size: int = 8) -> torch.Tensor:
    """(2, N): each pair's chosen (0 where missing) and rejected log-probs under ``model``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        parts = [sequence_logps(model, pair_batch(pairs[i : i + batch_size], block_size, pad_id).to(device)).view(2, -1)
                 for i in range(0, len(pairs), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts, dim=1).cpu()


def preference_figures(model: nn.Module, pairs: Sequence[EncodedPair], block_size: int, pad_id: int) -> dict[str, Any]:
    """Preference accuracy: the share of pairs with a chosen reply where the model gives it a higher
    log-prob than the rejected one; and the mean log-prob of the rejected replies (all pairs)."""
    if not pairs:
        return {"preference_accuracy": None, "rejected_logp": None}
    logps = pair_logps(model, pairs, block_size, pad_id)
    full = torch.tensor([p.chosen is not None for p in pairs])
    accuracy = float((logps[0, full] > logps[1, full]).float().mean()) if full.any() else None
    return {"preference_accuracy": accuracy, "rejected_logp": float(logps[1].mean())}


def train_dpo(model: BitZeroLM, pairs: Sequence[EncodedPair], cfg: DPOConfig, block_size: int, pad_id: int,
              on_metrics: Callable[[int, dict[str, float]], None] | None = None) -> BitZeroLM:
    """``cfg.steps`` DPO steps on ``pairs`` against a frozen copy of ``model`` as it is now."""
    device = resolve_device(cfg.device)
    model.to(device)
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    train_cfg = TrainConfig(max_steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=0.0,
                            schedule="constant", warmup_frac=0.0, precision="fp32", device=cfg.device,
                            auto_batch=False, progress=False, seed=cfg.seed)
    trainer = Trainer(model, train_cfg, DistContext(device=device), loss_fn=DPOLoss(cfg.beta))
    rng = random.Random(cfg.seed)
    order: list[int] = []
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:
            order += rng.sample(range(len(pairs)), len(pairs))
        chosen = [pairs[i] for i in order[: cfg.batch_size]]
        del order[: cfg.batch_size]
        batch = pair_batch(chosen, block_size, pad_id)
        batch.extras["ref_logps"] = sequence_logps(reference, batch.to(device)).detach().cpu()
        metrics = trainer.step([batch])
        if on_metrics is not None:
            on_metrics(step, metrics)
    return model.eval()


def personalize(
    model: BitZeroLM, tokenizer: Tokenizer, train_pairs: Sequence[PreferencePair],
    heldout_pairs: Sequence[PreferencePair], validation: Sequence[Example], cfg: DPOConfig,
    on_metrics: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[BitZeroLM, dict[str, Any]]:
    """DPO on ``train_pairs``; held-out preference figures and conversation NLL before and after.
    Returns the pre-step model (and says so) when the NLL worsened by more than the tolerance."""
    block_size = cfg.seq_len or model.config.block_size
    pad_id = tokenizer.pad_id
    heldout = encode_pairs(tokenizer, heldout_pairs)
    device = resolve_device(cfg.device)
    before_model = copy.deepcopy(model).to(device).eval()

    def figures(m: BitZeroLM) -> dict[str, Any]:
        nll = held_out_nll(m, {"validation": validation}, 8, block_size, pad_id)["overall"] if validation else None
        return {**preference_figures(m, heldout, block_size, pad_id), "validation_nll": nll}

    before = figures(before_model)
    trained = train_dpo(model, encode_pairs(tokenizer, train_pairs), cfg, block_size, pad_id, on_metrics)
    after = figures(trained)
    change = (after["validation_nll"] - before["validation_nll"]) if validation else None
    kept = change is not None and change > cfg.nll_tolerance
    report = {
        "status": "kept the pre-step model: held-out NLL worsened by more than nll_tolerance" if kept
        else "personalized",
        "train_pairs": len(train_pairs), "heldout_pairs": len(heldout_pairs),
        "heldout_pairs_with_chosen": sum(p.chosen is not None for p in heldout_pairs),
        "before": before, "after": after, "validation_nll_change": change, "nll_tolerance": cfg.nll_tolerance,
        "kept_pre_step_model": kept, "beta": cfg.beta, "steps": cfg.steps,
    }
    return (before_model if kept else trained).cpu(), report
