"""Nodes of the distillation stage: each one loads, calls the library, and returns.

The student is the imported teacher converted to ternary by the conversion ladder
(``bitzero.train.conversion``: absmean -> fitted scales -> salient critical rows -> data-aware
rounding -> block-wise reconstruction, each rung kept only if it lowers the held-out NLL), then trained on CE + T^2 KL to the
teacher's logits (+ attention relations when ``gamma`` > 0). Two baselines are measured in the same
run on the same held-out conversations: PTQ (absmean, the ladder's first rung) and CE-only (the
same converted student and steps without the teacher).

Under torchrun every rank runs every node (training meets in DDP); outputs are returned on all
ranks and written by rank 0 only (``MainRankDataset``), and step metrics go to MLflow from rank 0.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import mlflow
import torch

from bitzero.model import BitZeroLM, CheckpointError
from bitzero.model.pretrained import grow_vocabulary, ternary_student
from bitzero.text import Tokenizer
from bitzero.train import DistillLoss, Example, TrainConfig, fit
from bitzero.train.conversion import LadderSettings, convert
from bitzero.train.ddp import resolve_device
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


def _nll(model: BitZeroLM, sets: ValidationSets, params: dict[str, Any], tokenizer: Tokenizer) -> dict[str, Any]:
    return held_out_nll(model, sets, params["train"]["eval_batch_size"], params["train"]["seq_len"], tokenizer.pad_id)


def _set_threads(params: dict[str, Any]) -> None:
    if params["train"]["num_threads"]:
        torch.set_num_threads(params["train"]["num_threads"])


def measure_teacher(
    teacher: BitZeroLM, tokenizer_data: dict[str, Any], sets: ValidationSets, params: dict[str, Any]
) -> dict[str, Any]:
    """Held-out NLL of the full-precision teacher: the reference of every other figure."""
    _set_threads(params)
    reference = _nll(teacher, sets, params, Tokenizer.from_dict(tokenizer_data))
    log.info("held-out NLL: teacher %.3f", reference["overall"])
    return reference


def convert_student(
    teacher: BitZeroLM, tokenizer_data: dict[str, Any], train: list[Example], sets: ValidationSets,
    params: dict[str, Any],
) -> tuple[BitZeroLM, dict[str, Any], dict[str, Any]]:
    """The ternary student after the conversion ladder (calibrated on the first training
    conversations), PTQ's held-out NLL (the absmean rung) and the ladder's table by rung."""
    tokenizer = Tokenizer.from_dict(tokenizer_data)
    _set_threads(params)
    student = params["student"]
    model = ternary_student(teacher, student["critical_ratio"], student["sub_norm"], student["n_layer"],
                            student["per_row_scale"])
    # On the training device: GPTQ and block-wise reconstruction are matrix work a GPU does in seconds.
    model.to(resolve_device(params["train"]["device"], int(os.environ.get("LOCAL_RANK", "0"))))
    figures: dict[str, dict[str, Any]] = {}

    def evaluate(candidate: BitZeroLM) -> float:
        figures[f"rung{len(figures)}"] = _nll(candidate, sets, params, tokenizer)
        return float(figures[f"rung{len(figures) - 1}"]["overall"])

    table = convert(model, train, evaluate, LadderSettings.from_dict(params["conversion"]))
    for row in table:
        log.info("conversion %-13s NLL %.3f  %.2f min  %.2f bits/weight  %s", row["rung"], row["held_out_nll"],
                 row["minutes"], row["bits_per_weight"], "kept" if row["kept"] else "dropped")
    ladder = {row["rung"]: {k: v for k, v in row.items() if k != "rung"} for row in table}
    return model.cpu().eval(), figures["rung0"], ladder


def _mlflow_logger(prefix: str) -> Callable[[int, dict[str, float]], None]:
    """Step-wise metrics into the stage's MLflow run (opened by kedro-mlflow), rank 0 only."""

    def log_metrics(step: int, metrics: dict[str, float]) -> None:
        if is_main_rank() and mlflow.active_run() is not None:
            mlflow.log_metrics({f"{prefix}/{k}": float(v) for k, v in metrics.items()}, step=step)

    return log_metrics


def _train(
    teacher: BitZeroLM, converted: BitZeroLM, tokenizer: Tokenizer, train: list[Example], sets: ValidationSets,
    params: dict[str, Any], role: str, with_teacher: bool,
) -> tuple[BitZeroLM, dict[str, Any]]:
    """Train a copy of the converted student (with the teacher's logits or CE only), then measure
    held-out NLL."""
    torch.manual_seed(params["seed"])  # same on every rank: DDP starts from identical weights
    model = copy.deepcopy(converted)
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
    teacher: BitZeroLM, converted: BitZeroLM, tokenizer_data: dict[str, Any], train: list[Example],
    sets: ValidationSets, params: dict[str, Any],
) -> tuple[BitZeroLM, dict[str, Any], dict[str, Any]]:
    """The ternary student distilled from the teacher, and its checkpoint."""
    tokenizer = Tokenizer.from_dict(tokenizer_data)
    model, summary = _train(teacher, converted, tokenizer, train, sets, params, "student", with_teacher=True)
    metadata = {"role": "student", "held_out_nll": summary["held_out_nll"]["overall"]}
    run = mlflow.active_run()
    if run is not None:
        metadata["mlflow_run_id"] = run.info.run_id
    checkpoint = {"model": model.cpu().eval(), "tokenizer": tokenizer, "metadata": metadata}
    return model, checkpoint, summary


def train_ce_only(
    teacher: BitZeroLM, converted: BitZeroLM, tokenizer_data: dict[str, Any], train: list[Example],
    sets: ValidationSets, params: dict[str, Any],
) -> dict[str, Any]:
    """The baseline: the same converted student, data and steps, trained on the data alone."""
    if not params["baselines"]["ce_only"]:
        return {"skipped": True}
    _, summary = _train(teacher, converted, Tokenizer.from_dict(tokenizer_data), train, sets, params, "ce_only",
                        with_teacher=False)
    return summary


def converted_nll(ladder: dict[str, Any]) -> float:
    """Held-out NLL of the student the ladder hands to training: its best (last kept) rung."""
    return min(row["held_out_nll"] for row in ladder.values() if row["kept"])


def _loss_curves(start: float, arms: dict[str, dict[str, Any]]) -> list[Row]:
    """Per trained arm, the cross-entropy on the training batch of each step (the student's
    objective adds the teacher's KL; CE is what compares) and the held-out NLL. The validation
    curve starts at step 0 with the converted student (the ladder's best rung, untrained) and ends
    with the final held-out NLL."""
    series: dict[str, list[tuple[float, float]]] = {}
    for arm, summary in arms.items():
        trained = not summary.get("skipped")
        series[f"{arm}_train"] = [
            (step, metrics.get("ce", metrics["loss"])) for step, metrics in summary[CURVES]["train"]
        ] if trained else []
        series[f"{arm}_validation"] = [
            (0, start), *summary[CURVES]["validation"], (summary["steps"], summary["held_out_nll"]["overall"]),
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
    ladder: dict[str, Any],
    student: dict[str, Any],
    ce_only: dict[str, Any],
    data_stats: dict[str, Any],
    student_model: BitZeroLM,
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, float]], list[Row], list[Row]]:
    """The NLL table and the conversion ladder (DVC metrics), the per-layer quantization report,
    MLflow metrics, and the plot tables: loss curves and per-layer ternary shares."""
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
        "conversion": ladder,
        "student": {k: v for k, v in student.items() if k not in ("held_out_nll", CURVES)},
        "ce_only": {k: v for k, v in ce_only.items() if k not in ("held_out_nll", CURVES)},
        "data": data_stats,
    }
    curves = _loss_curves(converted_nll(ladder), {"student": student, "ce_only": ce_only})
    return summary, quantization, report_metrics(summary), curves, _ternary_shares(quantization)
