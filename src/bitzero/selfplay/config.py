"""Self-play settings: one dataclass, filled from the stage's parameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bitzero.config import check_keys
from bitzero.selfplay.tasks import KINDS


@dataclass
class SelfPlayConfig:
    """Budgets are wall-clock seconds (the ablation compares arms at equal wall time), each
    capped by a step or iteration count so micro runs stay deterministic in length."""

    seed: int = 0
    heldout_seed: int = 1_000_003
    heldout_per_cell: int = 25  # held-out tasks per (kind, level)
    heldout_levels: tuple[int, ...] = (1, 2)
    validation_seed: int = 2_000_003  # picks the shipped model; the held-out set never does
    validation_per_cell: int = 25
    kinds: tuple[str, ...] = KINDS
    seed_tasks_per_cell: int = 300  # cold-start buffer: generator tasks per (kind, level)
    induction_pairs: int = 4
    answer_tokens: dict[str, int] = field(
        default_factory=lambda: {"deduction": 12, "abduction": 12, "induction": 40, "math": 12}
    )
    proposal_tokens: int = 64
    max_prompt_tokens: int = 192  # the chat-templated prompt (system, user, references) at most
    references: int = 3  # K references shown to the proposer
    proposals_per_iteration: int = 8
    tasks_per_iteration: int = 16
    samples_per_task: int = 4  # n solver samples per task (solve rate, learnability)
    temperature: float = 1.0
    rollout_batch: int = 64
    # Supervised learning from the verifier (warm-up, then every iteration).
    warmup_seconds: float = 60.0
    warmup_max_steps: int = 1000
    warmup_levels: tuple[int, ...] = (1, 2)  # the curriculum starts easy; later levels come with the controller
    sft_lr: float = 3e-3
    sft_batch_size: int = 32
    sft_steps_per_iteration: int = 8
    proposer_sft_fraction: float = 0.15
    # The self-play arms: with PPO and, for the ablation, without.
    arm_seconds: float = 45.0
    max_iterations: int = 1000
    ablation: bool = True
    ppo_lr: float = 1e-4
    clip_low: float = 0.2
    clip_high: float = 0.28
    kl_coef: float = 0.05
    entropy_coef: float = 0.0
    ppo_epochs: int = 2
    ppo_minibatch: int = 32
    band_low: float = 0.2
    band_high: float = 0.8
    grad_clip: float = 1.0
    # Sandbox.
    sandbox_timeout_s: float = 1.0
    sandbox_memory_mb: int = 256
    sandbox_workers: int = 1
    max_output_chars: int = 40
    device: str = "cpu"
    num_threads: int | None = None

    def __post_init__(self) -> None:
        self.heldout_levels = tuple(self.heldout_levels)
        self.warmup_levels = tuple(self.warmup_levels)
        self.kinds = tuple(self.kinds)
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {self.kinds}")
        if missing := set(self.kinds) - set(self.answer_tokens):
            raise ValueError(f"answer_tokens lacks {sorted(missing)}")
        if not 0.0 <= self.band_low < self.band_high <= 1.0:
            raise ValueError("need 0 <= band_low < band_high <= 1")
        if min(self.max_prompt_tokens, self.proposal_tokens, *self.answer_tokens.values()) < 1:
            raise ValueError("max_prompt_tokens, proposal_tokens and answer_tokens must be positive")
        if self.samples_per_task < 2:
            raise ValueError("samples_per_task must be at least 2 (a solve rate from one sample is 0 or 1)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SelfPlayConfig:
        check_keys(cls, values, "self-play")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
