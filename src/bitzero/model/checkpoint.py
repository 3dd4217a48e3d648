"""Model checkpoints: safetensors weights + config JSON (+ tokenizer JSON), written as one unit.

The folder is assembled beside its destination and swapped in by rename, so a crash leaves either
the previous checkpoint or the new one, never a mix of weights from one and config from another.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bitzero.errors import LanguageModelError
from bitzero.files import staged_folder
from bitzero.model.transformer import BitZeroLM, ModelConfig
from bitzero.text import Tokenizer

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"


class CheckpointError(LanguageModelError, RuntimeError):
    """A checkpoint folder is missing a file or does not match its config."""


def save_checkpoint(
    model: BitZeroLM,
    folder: str | Path,
    tokenizer: Tokenizer | str | Path | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write weights, config (with optional metadata) and the tokenizer (object or file) atomically."""
    with staged_folder(folder) as staging:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE))
        config = {"model": model.config.to_dict(), "metadata": metadata or {}}
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
        if isinstance(tokenizer, Tokenizer):
            tokenizer.save(staging / TOKENIZER_FILE)
        elif tokenizer is not None:
            shutil.copyfile(tokenizer, staging / TOKENIZER_FILE)
    return Path(folder)


def read_checkpoint_config(folder: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """The model config and the metadata stored with a checkpoint."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_FILE} in checkpoint folder {folder}")
    data = json.loads(path.read_text(encoding="utf-8"))
    return ModelConfig.from_dict(data["model"]), data.get("metadata", {})


def load_checkpoint(folder: str | Path, map_location: str | torch.device = "cpu") -> BitZeroLM:
    """Rebuild the model from a checkpoint folder (in eval mode, ready for inference)."""
    config, _ = read_checkpoint_config(folder)
    weights = Path(folder) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"no {WEIGHTS_FILE} in checkpoint folder {folder}")
    model = BitZeroLM(config)
    try:
        model.load_state_dict(load_file(str(weights), device=str(map_location)))
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {folder} do not match its config: {exc}") from exc
    return model.to(map_location).eval()
