"""The ternary (BitNet b1.58) transformer: BitLinear, the model, generation and checkpoints."""

from bitzero.model.bitlinear import (
    BitLinear,
    adaptive_critical_ratio,
    quantize_activations,
    quantize_weights,
)
from bitzero.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from bitzero.model.generation import KVCache, Rollout
from bitzero.model.transformer import IGNORE_INDEX, BitZeroLM, ModelConfig

__all__ = [
    "IGNORE_INDEX",
    "BitLinear",
    "BitZeroLM",
    "CheckpointError",
    "KVCache",
    "ModelConfig",
    "Rollout",
    "adaptive_critical_ratio",
    "load_checkpoint",
    "quantize_activations",
    "quantize_weights",
    "read_checkpoint_config",
    "save_checkpoint",
]
