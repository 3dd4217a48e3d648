"""The training loop: sampling with a curriculum, steps, validation, checkpoints, progress, metrics.

One loop for the full-precision teacher, the ternary student (pass a ``DistillLoss``) and later
PPO (a custom ``loss_fn``). Metrics go to ``on_metrics(step, metrics)`` on rank 0 only; the
library never imports a tracking client.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from bitzero.model import BitLinear, BitZeroLM
from bitzero.train.autobatch import find_batch_size
from bitzero.train.batching import Example, ExampleLike, as_examples, collate
from bitzero.train.config import TrainConfig
from bitzero.train.curriculum import CurriculumSampler, shard
from bitzero.train.ddp import (
    DistContext,
    RankLogger,
    all_reduce_min,
    all_reduce_sum,
    any_rank,
    barrier,
    cpu_threads_per_rank,
    gather_objects,
    init_distributed,
)
from bitzero.train.distill import LossFn, target_logits, token_ce_sum
from bitzero.train.trainer import Trainer

STATE_FILE = "train_state.pt"
MetricsCallback = Callable[[int, dict[str, float]], None]
log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    steps: int
    train_loss: float
    val_loss: float | None
    tokens_per_s: float
    micro_batch_size: int
    train_tokens: float = 0.0  # input tokens over all ranks in this call (the token budget)
    train_seconds: float = 0.0  # time in training steps, validation and checkpoints excluded
    val_history: list[tuple[int, float]] = field(default_factory=list)
    train_history: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # every step's metrics: the curves


@torch.no_grad()
def nll_totals(
    model: BitZeroLM,
    data: Iterable[ExampleLike],
    batch_size: int = 32,
    pack: bool = False,
    pad_id: int = 0,
    ctx: DistContext | None = None,
    dtype: torch.dtype = torch.float32,
    seq_len: int | None = None,
) -> tuple[float, int]:
    """(summed cross-entropy in nats, target tokens) over every rank's shard of ``data``; each
    example keeps its last ``seq_len`` + 1 tokens, the whole context by default."""
    ctx = ctx or DistContext(device=next(model.parameters()).device)
    examples = shard(as_examples(data), ctx.rank, ctx.world_size)
    block_size = seq_len or model.config.block_size
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=ctx.device)
    try:
        for start in range(0, len(examples), batch_size):
            batch = collate(examples[start : start + batch_size], block_size, pack, pad_id).to(ctx.device)
            with torch.autocast(ctx.device.type, dtype=dtype, enabled=dtype != torch.float32):
                logits, targets = target_logits(model, batch)
            totals[0] += token_ce_sum(logits, targets).double()
            totals[1] += batch.n_targets
    finally:
        model.train(was_training)
    totals = all_reduce_sum(totals, ctx)
    return float(totals[0]), int(totals[1])


def evaluate(model: BitZeroLM, data: Iterable[ExampleLike], *args: Any, **kwargs: Any) -> float:
    """Mean cross-entropy in nats per target token; the arguments are ``nll_totals``'."""
    total, count = nll_totals(model, data, *args, **kwargs)
    if count == 0:
        raise ValueError("the validation set has no target tokens")
    return total / count


def _save_state(path: Path, trainer: Trainer, sampler: CurriculumSampler, ctx: DistContext) -> None:
    """Everything needed to continue identically; written by rank 0, atomically."""
    rng = {"cpu": torch.get_rng_state()}
    if ctx.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(ctx.device)
    rngs = gather_objects(rng, ctx)
    if ctx.is_main:
        state = {**trainer.state_dict(), "sampler": sampler.state_dict(), "rng": rngs}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
    barrier(ctx)


def _load_state(path: Path, trainer: Trainer, sampler: CurriculumSampler, ctx: DistContext) -> None:
    state = torch.load(path, map_location=ctx.device, weights_only=False)
    trainer.load_state_dict(state)
    sampler.load_state_dict(state["sampler"])
    rngs = state["rng"]
    if len(rngs) == ctx.world_size:
        torch.set_rng_state(rngs[ctx.rank]["cpu"].cpu())
        if "cuda" in rngs[ctx.rank] and ctx.device.type == "cuda":
            torch.cuda.set_rng_state(rngs[ctx.rank]["cuda"].cpu(), ctx.device)


def _micro_batch_size(trainer: Trainer, cfg: TrainConfig, local_batch: int, ctx: DistContext) -> int:
    """The configured local batch on CPU; on CUDA the largest that fits (capped by it)."""
    if ctx.device.type != "cuda" or not cfg.auto_batch:
        return local_batch
    total = torch.cuda.get_device_properties(ctx.device).total_memory

    def try_step(size: int) -> None:
        torch.cuda.reset_peak_memory_stats(ctx.device)
        trainer.probe(size, cfg.seq_len or trainer.model.config.block_size)

    found = find_batch_size(
        try_step,
        limit=local_batch,
        start=local_batch,
        memory_fraction=lambda: torch.cuda.max_memory_allocated(ctx.device) / total,
        reserve=cfg.vram_reserve,
        on_oom=torch.cuda.empty_cache,
    )
    torch.cuda.empty_cache()
    return all_reduce_min(found, ctx)


def _freeze_critical_masks(model: nn.Module) -> None:
    """Fix a ternary model's critical channels once (every rank holds the same weights, so the
    same channels); a resumed run past the step freezes at its first step."""
    if isinstance(model, BitZeroLM) and not model.config.critical_mask_frozen and model.bit_linears():
        model.freeze_critical_masks()


def _set_quant_mix(model: nn.Module, mix: float) -> None:
    for module in model.modules():
        if isinstance(module, BitLinear):
            module.quant_mix = mix


def _out_of_time(result: TrainResult, cfg: TrainConfig, ctx: DistContext) -> bool:
    """The time budget is spent (on any rank: all stop at the same step)."""
    spent = cfg.max_seconds is not None and result.train_seconds >= cfg.max_seconds
    return any_rank(spent, ctx) if ctx.is_distributed else spent


def fit(
    model: BitZeroLM,
    train_data: Iterable[ExampleLike],
    cfg: TrainConfig,
    *,
    val_data: Iterable[ExampleLike] | None = None,
    loss_fn: LossFn | None = None,
    on_metrics: MetricsCallback | None = None,
    checkpoint_dir: str | Path | None = None,
) -> TrainResult:
    """Train ``model`` for ``cfg.max_steps`` optimizer steps or ``cfg.max_seconds``, whichever ends
    first; resume from ``checkpoint_dir`` if it holds a training state. Under torchrun every rank
    calls this with the same arguments."""
    ctx = init_distributed(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    elif ctx.is_distributed and ctx.device.type == "cpu":
        torch.set_num_threads(cpu_threads_per_rank())
    rank_log = RankLogger(log, ctx)
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of world size {ctx.world_size}")
    torch.manual_seed(cfg.seed * 1000 + ctx.rank)  # dropout differs per rank, reproducibly
    examples = as_examples(train_data)
    val_examples: Sequence[Example] = as_examples(val_data) if val_data is not None else []
    block_size = cfg.seq_len or model.config.block_size
    sampler = CurriculumSampler(examples, cfg.max_steps, cfg.curriculum_start, cfg.curriculum_growth, cfg.seed)
    trainer = Trainer(model, cfg, ctx, loss_fn)
    state_path = Path(checkpoint_dir) / STATE_FILE if checkpoint_dir is not None else None
    if state_path is not None and state_path.exists():
        _load_state(state_path, trainer, sampler, ctx)
        rank_log.info("resumed from %s at step %d", state_path, trainer.steps_done)
    local_batch = cfg.batch_size // ctx.world_size
    micro = _micro_batch_size(trainer, cfg, local_batch, ctx)
    rank_log.info(
        "training %d steps on %s (%s), %d rank(s), micro-batch %d of %d per rank",
        cfg.max_steps, ctx.device, trainer.dtype, ctx.world_size, micro, local_batch,
    )

    result = TrainResult(trainer.steps_done, float("nan"), None, 0.0, micro)

    def validate(step: int) -> float:
        loss = evaluate(trainer.model, val_examples, cfg.eval_batch_size, cfg.pack, cfg.pad_id, ctx, trainer.dtype,
                        cfg.seq_len)
        result.val_history.append((step, loss))
        result.val_loss = loss
        return loss

    bar = tqdm(
        total=cfg.max_steps, initial=trainer.steps_done, unit="step",
        disable=not (cfg.progress and ctx.is_main), dynamic_ncols=True,
    )
    try:
        stop = False
        while trainer.steps_done < cfg.max_steps and not stop:
            started = time.perf_counter()
            step = trainer.steps_done
            local = shard(sampler.sample(step, cfg.batch_size), ctx.rank, ctx.world_size)
            if cfg.quant_warmup_steps:
                _set_quant_mix(trainer.model, min(1.0, (step + 1) / cfg.quant_warmup_steps))
            micro_batches = [
                collate([examples[i] for i in local[j : j + micro]], block_size, cfg.pack, cfg.pad_id)
                for j in range(0, len(local), micro)
            ]
            metrics = trainer.step(micro_batches)
            done = trainer.steps_done
            if cfg.critical_freeze_step and done >= cfg.critical_freeze_step:
                _freeze_critical_masks(trainer.model)
            result.train_tokens += metrics.pop("tokens")
            result.train_seconds += time.perf_counter() - started
            tokens_per_s = result.train_tokens / max(result.train_seconds, 1e-9)
            result.train_loss, result.tokens_per_s, result.steps = metrics["loss"], tokens_per_s, done
            result.train_history.append((done, dict(metrics)))
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", tok_s=f"{tokens_per_s:,.0f}")
            report = {f"train/{k}": v for k, v in metrics.items()}
            report["train/tokens_per_s"] = tokens_per_s
            stop = _out_of_time(result, cfg, ctx)
            last = done == cfg.max_steps or stop
            if val_examples and cfg.eval_every and (done % cfg.eval_every == 0 or last):
                report["val/loss"] = validate(done)
            if on_metrics and ctx.is_main and (done % max(cfg.log_every, 1) == 0 or "val/loss" in report or last):
                on_metrics(done, report)
            if state_path is not None and cfg.checkpoint_every and done % cfg.checkpoint_every == 0:
                _save_state(state_path, trainer, sampler, ctx)
    finally:
        bar.close()
        if cfg.quant_warmup_steps:
            _set_quant_mix(trainer.model, 1.0)
    if val_examples and not cfg.eval_every:
        loss = validate(trainer.steps_done)
        if on_metrics and ctx.is_main:
            on_metrics(trainer.steps_done, {"val/loss": loss})
    if state_path is not None:
        _save_state(state_path, trainer, sampler, ctx)
    return result
