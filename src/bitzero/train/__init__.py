"""One training loop for teacher, student and PPO: schedules, batching, distillation, DDP."""

from bitzero.train.autobatch import BatchSizeError, find_batch_size
from bitzero.train.batching import Batch, Example, as_examples, collate
from bitzero.train.config import TrainConfig
from bitzero.train.curriculum import CurriculumSampler
from bitzero.train.ddp import DistContext, init_distributed, shutdown_distributed
from bitzero.train.distill import DistillLoss, LossFn, distillation_loss, lm_loss
from bitzero.train.loop import MetricsCallback, TrainResult, evaluate, fit
from bitzero.train.schedule import build_optimizer, build_scheduler, two_stage_factor
from bitzero.train.trainer import Trainer, resolve_precision

__all__ = [
    "Batch",
    "BatchSizeError",
    "CurriculumSampler",
    "DistContext",
    "DistillLoss",
    "Example",
    "LossFn",
    "MetricsCallback",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "as_examples",
    "build_optimizer",
    "build_scheduler",
    "collate",
    "distillation_loss",
    "evaluate",
    "find_batch_size",
    "fit",
    "init_distributed",
    "lm_loss",
    "resolve_precision",
    "shutdown_distributed",
    "two_stage_factor",
]
