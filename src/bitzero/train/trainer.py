"""One optimizer step, whatever the loss: precision, DDP, accumulation, clipping, schedule.

``Trainer.step(micro_batches)`` is the piece PPO reuses directly: it builds its own batches
(with old log-probs and advantages in ``Batch.extras``) and passes its own ``loss_fn``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bitzero.model import BitZeroLM
from bitzero.train.batching import Batch
from bitzero.train.config import TrainConfig
from bitzero.train.ddp import DistContext, all_reduce_sum
from bitzero.train.distill import LossFn, lm_loss
from bitzero.train.schedule import build_optimizer, build_scheduler


def resolve_precision(setting: str, device: torch.device) -> torch.dtype:
    """"auto": bf16 where the GPU supports it, fp16 (with loss scaling) otherwise, fp32 on CPU."""
    if setting == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if setting != "fp32" and device.type != "cuda":
        raise ValueError(f"precision {setting!r} needs CUDA; use 'fp32' or 'auto' on {device}")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[setting]


class Trainer:
    """Owns the model on its device (DDP-wrapped when distributed), optimizer and scheduler."""

    def __init__(
        self,
        model: BitZeroLM,
        cfg: TrainConfig,
        ctx: DistContext,
        loss_fn: LossFn | None = None,
        total_steps: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.loss_fn = loss_fn or lm_loss
        self.model = model.to(ctx.device)
        if cfg.gradient_checkpointing:
            self.model.gradient_checkpointing = True
        self.dtype = resolve_precision(cfg.precision, ctx.device)
        self.module: nn.Module = self.model
        if ctx.is_distributed:
            # Buffers (critical masks, rotary tables) follow from identical weights: no broadcast
            # before each forward (broadcast_buffers is deprecated from torch 2.13 on).
            device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
            self.module = DistributedDataParallel(self.model, device_ids=device_ids, forward_sync_buffers=False)
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, total_steps or cfg.max_steps)
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None
        self.steps_done = 0

    def autocast(self) -> AbstractContextManager[Any]:
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device_type=self.ctx.device.type, dtype=self.dtype)

    def step(self, micro_batches: Sequence[Batch]) -> dict[str, float]:
        """Accumulate gradients over this rank's micro-batches, then one optimizer step.

        Returns the step's metrics averaged over ranks (loss in nats/token), plus ``lr`` (the
        rate this step used), ``grad_norm`` (before clipping) and ``tokens`` (over all ranks).
        """
        if not micro_batches:
            raise ValueError("a step needs at least one micro-batch on every rank")
        counts = torch.tensor(
            [sum(b.n_targets for b in micro_batches), sum(b.n_tokens for b in micro_batches)],
            dtype=torch.float64,
            device=self.ctx.device,
        )
        counts = all_reduce_sum(counts, self.ctx)
        denominator = max(float(counts[0]), 1.0) / self.ctx.world_size
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro_batches):
            batch = batch.to(self.ctx.device)
            batch.denominator = denominator
            last = i == len(micro_batches) - 1
            # self.module is the DDP wrapper exactly when distributed: no gradient sync but on the last.
            ddp = self.module if isinstance(self.module, DistributedDataParallel) else None
            sync = nullcontext() if last or ddp is None else ddp.no_sync()
            with sync:
                with self.autocast():
                    loss, metrics = self.loss_fn(self.module, batch)
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            for key, value in {"loss": loss.detach(), **metrics}.items():
                totals[key] = totals.get(key, 0.0) + value.detach().float()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        lr = self.optimizer.param_groups[0]["lr"]
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.steps_done += 1
        keys = sorted(totals)
        reduced = all_reduce_sum(torch.stack([totals[k] for k in keys]), self.ctx) / self.ctx.world_size
        result = {k: float(v) for k, v in zip(keys, reduced.tolist(), strict=True)}
        result.update(lr=float(lr), grad_norm=float(grad_norm), tokens=float(counts[1]))
        return result

    def probe(self, batch_size: int, seq_len: int) -> None:
        """Forward + backward on a worst-case random batch (for the batch-size search); no update."""
        vocab = self.model.config.vocab_size
        idx = torch.randint(vocab, (batch_size, seq_len), device=self.ctx.device)
        try:
            self.model.train()
            with self.autocast():
                loss, _ = self.loss_fn(self.model, Batch(idx, idx.clone()))
            loss.backward()
        finally:
            self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "steps_done": self.steps_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.steps_done = int(state["steps_done"])
