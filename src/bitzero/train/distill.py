"""Losses in the ``loss_fn(model, batch) -> (loss, metrics)`` form the loop accepts.

Contract: a loss (and each metric) is a sum over the batch's tokens divided by
``batch.denominator``; the loop sums micro-batches and averages ranks, which then gives the
per-token mean of the global batch.

Distillation (Hinton et al.): loss = alpha * CE(student, targets) + beta * T^2 * KL(teacher || student)
on temperature-T soft distributions, per target token, masked like the CE. T^2 keeps the soft
term's gradient scale independent of T. BitNet Distillation adds gamma * attention-relation
distillation (MiniLM v2): in one layer, the softmax-normalised self-similarities of the queries,
keys and values (QQ^T, KK^T, VV^T per head, scaled by 1/sqrt(d)) of the student are pulled to the
teacher's by KL, on real (non-padding) positions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from bitzero.model.transformer import IGNORE_INDEX, BitZeroLM, Block
from bitzero.train.batching import Batch

LossFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def token_ce_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed CE of logits (..., vocab) against targets (...), ignored targets left out."""
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def target_logits(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, vocab), targets (N,)) at the batch's N target positions only: a loss on the
    assistant's tokens need not project the rest of the conversation onto the vocabulary."""
    keep = batch.targets != IGNORE_INDEX
    logits, _ = model(batch.idx, keep=keep)
    return logits, batch.targets[keep]


def lm_loss(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Next-token cross-entropy on the unmasked targets (nats/token)."""
    return token_ce_sum(*target_logits(model, batch)) / batch.denominator, {}


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float,
    beta: float,
    temperature: float,
    denominator: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, ce, kl), each summed over target tokens and divided by ``denominator``
    (default: the number of target tokens); logits (..., vocab) for targets (...)."""
    keep = (targets != IGNORE_INDEX).reshape(-1)
    if denominator is None:
        denominator = float(max(int(keep.sum()), 1))
    ce = token_ce_sum(student_logits, targets) / denominator
    vocab = student_logits.shape[-1]
    s = F.log_softmax(student_logits.float().reshape(-1, vocab)[keep] / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float().reshape(-1, vocab)[keep] / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum() / denominator
    return alpha * ce + beta * temperature**2 * kl, ce, kl


def relation_kl(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor], keep: torch.Tensor) -> torch.Tensor:
    """Mean over q, k, v, heads and kept query positions of KL(teacher relations || student's).

    ``keep`` (B, T) marks real positions; keys outside it are masked out of both softmaxes.
    """
    key_mask = torch.zeros(keep.shape, device=keep.device).masked_fill(~keep, float("-inf"))[:, None, None, :]
    total = keep.new_zeros((), dtype=torch.float32)
    for name in ("q", "k", "v"):
        s, t = student[name].float(), teacher[name].float()
        scale = s.shape[-1] ** -0.5
        log_s = F.log_softmax(s @ s.transpose(-1, -2) * scale + key_mask, dim=-1)
        log_t = F.log_softmax(t @ t.transpose(-1, -2) * scale + key_mask, dim=-1)
        per_query = (log_t.exp() * (log_t - log_s)).nan_to_num().sum(-1).mean(1)  # (B, T)
        total = total + (per_query * keep).sum() / keep.sum().clamp(min=1)
    return total / 3


class DistillLoss:
    """loss_fn for student training against a frozen teacher (eval mode, no grad).

    ``gamma`` > 0 adds attention-relation distillation on the student's layer ``relation_layer``
    (default the last) against the teacher's corresponding layer (the last for the last).
    """

    def __init__(
        self, teacher: nn.Module, alpha: float = 0.5, beta: float = 0.5, temperature: float = 2.0,
        gamma: float = 0.0, relation_layer: int = -1, pad_id: int | None = None,
    ) -> None:
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.alpha, self.beta, self.temperature = alpha, beta, temperature
        self.gamma, self.relation_layer, self.pad_id = gamma, relation_layer, pad_id

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if next(self.teacher.parameters()).device != batch.idx.device:
            self.teacher.to(batch.idx.device)
        self.teacher.eval()
        student_attn = teacher_attn = None
        student_qkv: dict[str, torch.Tensor] = {}
        teacher_qkv: dict[str, torch.Tensor] = {}
        if self.gamma:
            student_attn = _layer(model, self.relation_layer).attn
            teacher_attn = _layer(self.teacher, self.relation_layer).attn
            student_attn.capture, teacher_attn.capture = student_qkv, teacher_qkv
        try:
            with torch.no_grad():
                teacher_logits, _ = target_logits(self.teacher, batch)
            student_logits, targets = target_logits(model, batch)
            loss, ce, kl = distillation_loss(
                student_logits, teacher_logits, targets,
                self.alpha, self.beta, self.temperature, batch.denominator,
            )
            metrics = {"ce": ce.detach(), "kl": kl.detach()}
            if student_attn is not None and teacher_attn is not None:
                keep = batch.idx != self.pad_id if self.pad_id is not None else torch.ones_like(batch.idx, dtype=torch.bool)
                relations = relation_kl(student_qkv, teacher_qkv, keep)
                # The loop sums micro-batch losses divided by the step's denominator: scale alike.
                share = batch.n_targets / max(batch.denominator, 1e-9)
                loss = loss + self.gamma * relations * share
                metrics["relation_kl"] = relations.detach() * share
        finally:
            if student_attn is not None and teacher_attn is not None:
                student_attn.capture = teacher_attn.capture = None
        return loss, metrics


def _layer(model: nn.Module, index: int) -> Block:
    """A block of a (possibly DDP-wrapped) BitZeroLM."""
    inner = cast(BitZeroLM, getattr(model, "module", model))
    return cast(Block, inner.blocks[index])
