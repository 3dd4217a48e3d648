"""Training settings: one dataclass for teacher, student and (later) PPO runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bitzero.config import check_keys

SCHEDULES = ("onecycle", "two_stage", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Every knob of the loop. ``batch_size`` counts sequences per optimizer step over all ranks."""

    max_steps: int = 1000
    # Time budget of the training steps (validation and checkpoints excluded): a CPU's speed differs
    # fourfold between machines, so a count of steps tuned on one overruns on another. Training ends
    # at max_steps or when this runs out, whichever comes first (under DDP when any rank's does);
    # None: steps only. The schedule is laid over max_steps either way.
    max_seconds: float | None = None
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    schedule: str = "onecycle"
    warmup_frac: float = 0.05
    # OneCycleLR: start at lr / div_factor, end at lr / (div_factor * final_div_factor).
    div_factor: float = 25.0
    final_div_factor: float = 100.0
    # Two-stage BitNet schedule: stage 2 starts at stage_split of the run, at lr * stage2_peak_ratio,
    # and decays to lr * final_lr_ratio; weight decay is switched off in stage 2.
    stage_split: float = 0.5
    stage1_end_ratio: float = 0.5
    stage2_peak_ratio: float = 0.3
    final_lr_ratio: float = 0.05
    # Curriculum: the sampling pool starts with the easiest curriculum_start fraction of examples
    # (by difficulty, then length) and grows linearly to all of them over curriculum_growth of the run.
    curriculum_start: float = 1.0
    curriculum_growth: float = 0.5
    # Ternary models: fix the critical channels after this many steps (0: re-chosen every step).
    critical_freeze_step: int = 0
    # Ternary models: blend quantization in linearly over this many steps (0: fully ternary from
    # the start), the warm-up that converts pretrained weights without a loss spike.
    quant_warmup_steps: int = 0
    # Tokens per training sequence (long examples keep their last seq_len + 1); null: the context.
    seq_len: int | None = None
    pack: bool = False
    pad_id: int = 0
    eval_every: int = 0
    eval_batch_size: int = 32
    log_every: int = 10
    checkpoint_every: int = 0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    num_threads: int | None = None
    gradient_checkpointing: bool = False
    auto_batch: bool = True
    vram_reserve: float = 0.1
    progress: bool = True

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.max_steps < 1 or self.batch_size < 1:
            raise ValueError("max_steps and batch_size must be positive")
        if not 0.0 < self.curriculum_start <= 1.0:
            raise ValueError("curriculum_start must be in (0, 1]")
        if not 0.0 < self.stage_split < 1.0:
            raise ValueError("stage_split must be in (0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        check_keys(cls, values, "train")
        return cls(**values)
