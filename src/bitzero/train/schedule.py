"""Optimizer and learning-rate schedules: OneCycle, or BitNet's two-stage schedule.

Two-stage (BitNet b1.58 "Training Tips"): ternary models tolerate, and need, a high LR early; at
mid-run the LR drops to a lower peak and weight decay is switched off, which gives the late loss
drop the paper reports.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from bitzero.train.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (norm gains and biases are not decayed)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay, "base_weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0, "base_weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def two_stage_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """LR multiplier at ``step``: warm-up, cosine to stage1_end_ratio, drop, cosine to final."""
    split = int(cfg.stage_split * total)
    warmup = max(1, int(cfg.warmup_frac * total))
    if step < warmup:
        return (step + 1) / warmup
    if step < split:
        progress = (step - warmup) / max(1, split - warmup)
        return _cosine(1.0, cfg.stage1_end_ratio, progress)
    progress = (step - split) / max(1, total - split)
    return _cosine(cfg.stage2_peak_ratio, cfg.final_lr_ratio, progress)


def _cosine(start: float, end: float, progress: float) -> float:
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class TwoStageSchedule(LambdaLR):
    """LambdaLR over ``two_stage_factor`` that also zeroes weight decay once stage 2 begins."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, cfg: TrainConfig) -> None:
        self.split_step = int(cfg.stage_split * total_steps)
        super().__init__(optimizer, lambda step: two_stage_factor(step, total_steps, cfg))

    def step(self, epoch: int | None = None) -> None:  # the LRScheduler API
        super().step(epoch)
        stage2 = self.last_epoch >= self.split_step
        for group in self.optimizer.param_groups:
            group["weight_decay"] = 0.0 if stage2 else group.get("base_weight_decay", 0.0)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> LRScheduler:
    if cfg.schedule == "two_stage":
        return TwoStageSchedule(optimizer, total_steps, cfg)
    if cfg.schedule == "onecycle":
        if total_steps < 3:
            raise ValueError("the onecycle schedule needs at least 3 steps; use 'constant'")
        # OneCycleLR divides by (warm-up steps - 1): keep at least two warm-up steps.
        pct_start = min(max(cfg.warmup_frac, 2 / total_steps), 1 - 1 / total_steps)
        return OneCycleLR(
            optimizer,
            max_lr=cfg.lr,
            total_steps=total_steps,
            pct_start=pct_start,
            div_factor=cfg.div_factor,
            final_div_factor=cfg.final_div_factor,
            cycle_momentum=False,
        )
    return LambdaLR(optimizer, lambda step: 1.0)
