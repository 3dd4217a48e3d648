"""Losses in the ``loss_fn(model, batch) -> (loss, metrics)`` form the loop accepts.

Contract: a loss (and each metric) is a sum over the batch's tokens divided by
``batch.denominator``; the loop sums micro-batches and averages ranks, which then gives the
per-token mean of the global batch.

Distillation (Hinton et al.): loss = alpha * CE(student, targets) + beta * T^2 * KL(teacher || student)
on temperature-T soft distributions, per target token, masked like the CE. T^2 keeps the soft
term's gradient scale independent of T.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bitzero.model.transformer import IGNORE_INDEX
from bitzero.train.batching import Batch

LossFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def token_ce_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def lm_loss(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Next-token cross-entropy on the unmasked targets (nats/token)."""
    logits, _ = model(batch.idx)
    return token_ce_sum(logits, batch.targets) / batch.denominator, {}


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
    (default: the number of target tokens)."""
    keep = (targets != IGNORE_INDEX).flatten()
    if denominator is None:
        denominator = float(max(int(keep.sum()), 1))
    ce = token_ce_sum(student_logits, targets) / denominator
    s = F.log_softmax(student_logits.float().flatten(0, 1)[keep] / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float().flatten(0, 1)[keep] / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum() / denominator
    return alpha * ce + beta * temperature**2 * kl, ce, kl


class DistillLoss:
    """loss_fn for student training against a frozen teacher (eval mode, no grad)."""

    def __init__(self, teacher: nn.Module, alpha: float = 0.5, beta: float = 0.5, temperature: float = 2.0) -> None:
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.alpha, self.beta, self.temperature = alpha, beta, temperature

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if next(self.teacher.parameters()).device != batch.idx.device:
            self.teacher.to(batch.idx.device)
        self.teacher.eval()
        with torch.no_grad():
            teacher_logits, _ = self.teacher(batch.idx)
        student_logits, _ = model(batch.idx)
        loss, ce, kl = distillation_loss(
            student_logits, teacher_logits, batch.targets,
            self.alpha, self.beta, self.temperature, batch.denominator,
        )
        return loss, {"ce": ce.detach(), "kl": kl.detach()}
