"""Nodes of the distillation stage: each one loads, calls the library, and returns.

The student is the imported teacher converted to ternary (``ternary_student``), trained on
CE + T^2 KL to the teacher's logits (+ attention relations when ``gamma`` > 0). Two baselines are
measured in the same run on the same held-out conversations: PTQ (the converted student, untrained)
and CE-only (the same conversion and steps without the teacher).

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

from bitzero.model import BitZeroLM, CheckpointError
from bitzero.model.pretrained import grow_vocabulary, ternary_student
from bitzero.text import Tokenizer
from bitzero.train import DistillLoss, Example, TrainConfig, fit
from bitzero.train.examples import records_to_examples
from bitzero.train.heldout import held_out_nll
from pipelines.plots import Row, table
from pipelines.ranks import is_main_rank
from pipelines.tracking import report_metrics

log = logging.getLogger(__name__)
VALIDATION_LOSS_ON = "assistant"  # held-out NLL always scores what the model should say
ValidationSets = dict[str, list[Example]]
CURVES = "curves"  # the summary's metrics per step: plot data, not report figures


def build_examples(
    tokenizer_data: dict[str, Any],
    train_records: list[dict[str, Any]],
    validation_records: list[dict[str, Any]],
    params: dict[str, Any],
) -> tuple[list[Example], ValidationSets, dict[str, Any]]:
    """Token examples for training (loss on ``params.loss_on``) and held-out sets per source
    (assistant tokens, at most ``validation.per_source`` conversations each, in file order)."""
    tokenizer = Tokenizer.from_dict(tokenizer_data)
    train = records_to_examples(train_records, tokenizer, params["loss_on"])
    by_source: dict[str, list[dict[str, Any]]] = {}
    for record in validation_records:
        by_source.setdefault(record.get("source", "unknown"), []).append(record)
    limit = params["validation"]["per_source"]
    sets = {name: records_to_examples(rows[:limit], tokenizer, VALIDATION_LOSS_ON) for name, rows in sorted(by_source.items())}
    sets = {name: examples for name, examples in sets.items() if examples}
    if not train or not sets:
        raise CheckpointError("distillation needs training and validation records with assistant turns")
    stats = {
        "train_examples": len(train),
        "validation_examples": {name: len(examples) for name, examples in sets.items()},
        "validation_target_tokens": sum(sum(ex.loss_mask[1:]) for v in sets.values() for ex in v),
    }
    return train, sets, stats


def prepare_teacher(teacher: BitZeroLM, tokenizer_data: dict[str, Any]) -> BitZeroLM:
    """The imported teacher sized to the (possibly adapted) vocabulary, frozen."""
    teacher = grow_vocabulary(teacher, Tokenizer.from_dict(tokenizer_data)).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def _train_config(params: dict[str, Any], tokenizer: Tokenizer) -> TrainConfig:
    return TrainConfig.from_dict({**params["train"], **params["student"]["train"], "pad_id": tokenizer.pad_id})


def _convert(teacher: BitZeroLM, params: dict[str, Any]) -> BitZeroLM:
    student = params["student"]
    return ternary_student(teacher, student["critical_ratio"], student["sub_norm"], student["n_layer"])


def _nll(model: BitZeroLM, sets: ValidationSets, params: dict[str, Any], tokenizer: Tokenizer) -> dict[str, Any]:
    return held_out_nll(model, sets, params["train"]["eval_batch_size"], params["train"]["seq_len"], tokenizer.pad_id)


def measure_references(
    teacher: BitZeroLM, tokenizer_data: dict[str, Any], sets: ValidationSets, params: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Held-out NLL of the full-precision teacher and of PTQ (converted to ternary, untrained)."""
    tokenizer = Tokenizer.from_dict(tokenizer_data)
    if params["train"]["num_threads"]:
        torch.set_num_threads(params["train"]["num_threads"])
    started = time.perf_counter()
    reference = _nll(teacher, sets, params, tokenizer)
    ptq = _nll(_convert(teacher, params).eval(), sets, params, tokenizer)
    log.info("held-out NLL: teacher %.3f, PTQ %.3f (%.0f s)", reference["overall"], ptq["overall"],
             time.perf_counter() - started)
    return reference, ptq


def _mlflow_logger(prefix: str) -> Callable[[int, dict[str, float]], None]:
    """Step-wise metrics into the stage's MLflow run (opened by kedro-mlflow), rank 0 only."""

    def log_metrics(step: int, metrics: dict[str, float]) -> None:
        if is_main_rank() and mlflow.active_run() is not None:
            mlflow.log_metrics({f"{prefix}/{k}": float(v) for k, v in metrics.items()}, step=step)

    return log_metrics


def _train(
    teacher: BitZeroLM, tokenizer: Tokenizer, train: list[Example], sets: ValidationSets,
    params: dict[str, Any], role: str, with_teacher: bool,
) -> tuple[BitZeroLM, dict[str, Any]]:
    """Convert, train (with the teacher's logits or CE only), then measure held-out NLL."""
    torch.manual_seed(params["seed"])  # same on every rank: DDP starts from identical weights
    model = _convert(teacher, params)
    student = params["student"]
    loss_fn = None
    if with_teacher:
        loss_fn = DistillLoss(teacher, student["alpha"], student["beta"], student["temperature"],
                              student["gamma"], student["relation_layer"], tokenizer.pad_id)
    cfg = _train_config(params, tokenizer)
    started = time.perf_counter()
    # Validation curves only when asked for: the held-out table below measures the end point.
    curve = [ex for examples in sets.values() for ex in examples] if cfg.eval_every else None
    result = fit(model, train, cfg, val_data=curve, loss_fn=loss_fn, on_metrics=_mlflow_logger(role))
    summary = {
        "held_out_nll": _nll(model, sets, params, tokenizer),
        "train_loss": result.train_loss,
        "train_tokens_per_s": result.tokens_per_s,
        "train_tokens": result.train_tokens,
        "steps": result.steps,
        "wall_s": time.perf_counter() - started,
        "params": model.num_params(),
        CURVES: {"train": result.train_history, "validation": result.val_history},
    }
    return model, summary


def train_student(
    teacher: BitZeroLM, tokenizer_data: dict[str, Any], train: list[Example], sets: ValidationSets,
    params: dict[str, Any],
) -> tuple[BitZeroLM, dict[str, Any], dict[str, Any]]:
    """The ternary student distilled from the teacher, and its checkpoint."""
    tokenizer = Tokenizer.from_dict(tokenizer_data)
    model, summary = _train(teacher, tokenizer, train, sets, params, "student", with_teacher=True)
    metadata = {"role": "student", "held_out_nll": summary["held_out_nll"]["overall"]}
    run = mlflow.active_run()
    if run is not None:
        metadata["mlflow_run_id"] = run.info.run_id
    checkpoint = {"model": model.cpu().eval(), "tokenizer": tokenizer, "metadata": metadata}
    return model, checkpoint, summary


def train_ce_only(
    teacher: BitZeroLM, tokenizer_data: dict[str, Any], train: list[Example], sets: ValidationSets,
    params: dict[str, Any],
) -> dict[str, Any]:
    """The baseline: the same conversion, data and steps, trained on the data alone."""
    if not params["baselines"]["ce_only"]:
        return {"skipped": True}
    _, summary = _train(teacher, Tokenizer.from_dict(tokenizer_data), train, sets, params, "ce_only",
                        with_teacher=False)
    return summary


def _loss_curves(ptq: dict[str, Any], arms: dict[str, dict[str, Any]]) -> list[Row]:
    """Per trained arm, the cross-entropy on the training batch of each step (the student's
    objective adds the teacher's KL; CE is what compares) and the held-out NLL. The validation
    curve starts at step 0 with PTQ (the same converted weights, untrained) and ends with the final
    held-out NLL."""
    series: dict[str, list[tuple[float, float]]] = {}
    for arm, summary in arms.items():
        trained = not summary.get("skipped")
        series[f"{arm}_train"] = [
            (step, metrics.get("ce", metrics["loss"])) for step, metrics in summary[CURVES]["train"]
        ] if trained else []
        series[f"{arm}_validation"] = [
            (0, ptq["overall"]), *summary[CURVES]["validation"], (summary["steps"], summary["held_out_nll"]["overall"]),
        ] if trained else []
    return table("step", series)


def _ternary_shares(quantization: dict[str, Any]) -> list[Row]:
    """Per BitLinear layer, in model order (names in the quantization report): the shares of its
    ternary codes -1, 0, +1 and of its full-precision output channels."""
    return [
        {"layer": index, "minus_one": layer["share_minus1"], "zero": layer["share_zero"],
         "plus_one": layer["share_plus1"], "full_precision": layer["critical_fraction"]}
        for index, layer in enumerate(quantization["layers"].values())
    ]


def report(
    teacher: dict[str, Any],
    ptq: dict[str, Any],
    student: dict[str, Any],
    ce_only: dict[str, Any],
    data_stats: dict[str, Any],
    student_model: BitZeroLM,
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, float]], list[Row], list[Row]]:
    """The NLL table (DVC metrics), the per-layer quantization report, MLflow metrics, and the
    plot tables: loss curves and per-layer ternary shares."""
    quantization = student_model.quantization_report()
    nll = {"teacher_fp32": teacher, "ptq": ptq, "student": student["held_out_nll"]}
    if not ce_only.get("skipped"):
        nll["ce_only"] = ce_only["held_out_nll"]
    summary = {
        "nll_unit": "nats per assistant token, held-out validation conversations",
        "held_out_nll": {name: figures["overall"] for name, figures in nll.items()},
        "held_out_nll_by_source": {name: figures["sources"] for name, figures in nll.items()},
        "student_vs_teacher": student["held_out_nll"]["overall"] / teacher["overall"],
        "student_beats_ptq": student["held_out_nll"]["overall"] < ptq["overall"],
        "student_beats_ce_only": None if ce_only.get("skipped") else
        student["held_out_nll"]["overall"] < ce_only["held_out_nll"]["overall"],
        "ternary_fraction": quantization["ternary_fraction"],
        "critical_fraction": quantization["critical_fraction"],
        "critical_ratio": str(params["student"]["critical_ratio"]),
        "student": {k: v for k, v in student.items() if k not in ("held_out_nll", CURVES)},
        "ce_only": {k: v for k, v in ce_only.items() if k not in ("held_out_nll", CURVES)},
        "data": data_stats,
    }
    curves = _loss_curves(ptq, {"student": student, "ce_only": ce_only})
    return summary, quantization, report_metrics(summary), curves, _ternary_shares(quantization)
