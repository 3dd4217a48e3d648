"""Nodes of the distillation stage: each one loads, calls the library, and returns.

Under torchrun every rank runs every node (training meets in DDP); outputs are returned on all
ranks and written by rank 0 only (``MainRankDataset``), and step metrics go to MLflow from rank 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import mlflow
import torch

from bitzero.model import BitZeroLM, CheckpointError, ModelConfig
from bitzero.text import Tokenizer
from bitzero.train import DistillLoss, Example, TrainConfig, evaluate, fit
from bitzero.train.examples import records_to_examples
from pipelines.ranks import is_main_rank
from pipelines.distillation.registry import load_registered_model
from pipelines.tracking import report_metrics

log = logging.getLogger(__name__)
VALIDATION_LOSS_ON = "assistant"  # validation always scores what the model should say


def build_examples(
    tokenizer_data: dict[str, Any],
    train_records: list[dict[str, Any]],
    validation_records: list[dict[str, Any]],
    params: dict[str, Any],
) -> tuple[list[Example], list[Example], dict[str, Any]]:
    """Token examples for training (loss on ``params.loss_on``) and validation (assistant tokens)."""
    tokenizer = Tokenizer.from_dict(tokenizer_data)
    train = records_to_examples(train_records, tokenizer, params["loss_on"])
    validation = records_to_examples(validation_records, tokenizer, VALIDATION_LOSS_ON)
    if not train or not validation:
        raise CheckpointError("distillation needs training and validation records with assistant turns")
    stats = {
        "train_examples": len(train),
        "validation_examples": len(validation),
        "skipped_records": len(train_records) + len(validation_records) - len(train) - len(validation),
        "validation_target_tokens": sum(sum(ex.loss_mask[1:]) for ex in validation),
    }
    return train, validation, stats


def _train_config(params: dict[str, Any], role: str) -> TrainConfig:
    """The shared training settings with the role's overrides (``teacher`` or ``student``)."""
    return TrainConfig.from_dict({**params["train"], **params[role].get("train", {})})


def _new_model(params: dict[str, Any], vocab_size: int, quantized: bool) -> BitZeroLM:
    # Same seed on every rank: DDP starts from identical weights, and each run is reproducible.
    torch.manual_seed(params["seed"])
    critical = params["student"]["critical_ratio"] if quantized else 0.0
    config = ModelConfig(vocab_size=vocab_size, quantized=quantized, critical_ratio=critical, **params["model"])
    return BitZeroLM(config)


def _mlflow_logger(prefix: str) -> Callable[[int, dict[str, float]], None]:
    """Step-wise metrics into the stage's MLflow run (opened by kedro-mlflow), rank 0 only."""

    def log_metrics(step: int, metrics: dict[str, float]) -> None:
        if is_main_rank() and mlflow.active_run() is not None:
            mlflow.log_metrics({f"{prefix}/{k}": float(v) for k, v in metrics.items()}, step=step)

    return log_metrics


def _fit(
    model: BitZeroLM,
    train: list[Example],
    validation: list[Example],
    cfg: TrainConfig,
    role: str,
    loss_fn: DistillLoss | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    result = fit(model, train, cfg, val_data=validation, loss_fn=loss_fn, on_metrics=_mlflow_logger(role))
    return {
        "val_loss": result.val_loss,
        "train_loss": result.train_loss,
        "train_tokens_per_s": result.tokens_per_s,
        "train_tokens": result.train_tokens,
        "steps": result.steps,
        "micro_batch_size": result.micro_batch_size,
        "wall_s": time.perf_counter() - started,
        "params": model.num_params(),
    }


def _checkpoint(model: BitZeroLM, tokenizer: Tokenizer, role: str, summary: dict[str, Any]) -> dict[str, Any]:
    metadata = {"role": role, "val_loss": summary["val_loss"]}
    if mlflow.active_run() is not None:
        metadata["mlflow_run_id"] = mlflow.active_run().info.run_id
    return {"model": model.cpu().eval(), "tokenizer": tokenizer, "metadata": metadata}


def train_teacher(
    tokenizer_data: dict[str, Any],
    train: list[Example],
    validation: list[Example],
    params: dict[str, Any],
) -> tuple[BitZeroLM, dict[str, Any], dict[str, Any]]:
    """The full-precision teacher: trained here, or loaded from the MLflow model registry."""
    tokenizer = Tokenizer.from_dict(tokenizer_data)
    registered = params["teacher"].get("registered_model")
    if registered:
        model = load_registered_model(registered)
        if model.config.vocab_size != tokenizer.vocab_size:
            raise CheckpointError(
                f"teacher {registered} has a vocabulary of {model.config.vocab_size}, "
                f"the tokenizer {tokenizer.vocab_size}: distillation needs the same ids"
            )
        cfg = _train_config(params, "teacher")
        summary = {
            "source": registered,
            "val_loss": evaluate(model, validation, cfg.eval_batch_size),
            "train_tokens_per_s": None,
            "params": model.num_params(),
        }
        log.info("teacher loaded from %s: validation loss %.4f", registered, summary["val_loss"])
    else:
        model = _new_model(params, tokenizer.vocab_size, quantized=False)
        summary = {"source": "trained", **_fit(model, train, validation, _train_config(params, "teacher"), "teacher")}
    return model, _checkpoint(model, tokenizer, "teacher", summary), summary


def train_student(
    teacher: BitZeroLM,
    tokenizer_data: dict[str, Any],
    train: list[Example],
    validation: list[Example],
    params: dict[str, Any],
) -> tuple[BitZeroLM, dict[str, Any], dict[str, Any]]:
    """The ternary student on CE + T^2 * KL(teacher || student)."""
    tokenizer = Tokenizer.from_dict(tokenizer_data)
    student = params["student"]
    loss_fn = DistillLoss(teacher, student["alpha"], student["beta"], student["temperature"])
    model = _new_model(params, tokenizer.vocab_size, quantized=True)
    summary = _fit(model, train, validation, _train_config(params, "student"), "student", loss_fn)
    return model, _checkpoint(model, tokenizer, "student", summary), summary


def train_baseline(
    tokenizer_data: dict[str, Any],
    train: list[Example],
    validation: list[Example],
    params: dict[str, Any],
) -> dict[str, Any]:
    """The same ternary model, settings and token budget as the student, without the teacher."""
    tokenizer = Tokenizer.from_dict(tokenizer_data)
    model = _new_model(params, tokenizer.vocab_size, quantized=True)
    return _fit(model, train, validation, _train_config(params, "student"), "baseline")


def report(
    teacher: dict[str, Any],
    student: dict[str, Any],
    baseline: dict[str, Any],
    data_stats: dict[str, Any],
    student_model: BitZeroLM,
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, float]]]:
    """Headline figures (DVC metrics), the per-layer quantization report, and MLflow metrics."""
    quantization = student_model.quantization_report()
    summary = {
        "teacher_val_loss": teacher["val_loss"],
        "student_val_loss": student["val_loss"],
        "baseline_val_loss": baseline["val_loss"],
        "student_vs_teacher": student["val_loss"] / teacher["val_loss"] - 1.0,
        "student_beats_baseline": student["val_loss"] < baseline["val_loss"],
        "ternary_fraction": quantization["ternary_fraction"],
        "critical_fraction": quantization["critical_fraction"],
        "critical_ratio": str(params["student"]["critical_ratio"]),
        "train_tokens_per_s_teacher": teacher["train_tokens_per_s"],
        "train_tokens_per_s_student": student["train_tokens_per_s"],
        "train_tokens_per_s_baseline": baseline["train_tokens_per_s"],
        "val_loss_unit": "nats per assistant token",
        "teacher": teacher,
        "student": student,
        "baseline": baseline,
        "data": data_stats,
    }
    return summary, quantization, report_metrics(summary)
