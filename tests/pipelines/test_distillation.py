"""The distillation stage on the micro profile: single process, a registered teacher, and torchrun."""

import json
import os
from pathlib import Path

import mlflow
import pytest

from bitzero.data.records import iter_jsonl, write_jsonl
from bitzero.model import (
    BitZeroLM,
    CheckpointError,
    ModelConfig,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from bitzero.text import Tokenizer
from pipelines.distillation.registry import find_checkpoint, load_registered_model
from tests.pipelines.conftest import kedro_run, torchrun_kedro

pytestmark = pytest.mark.timeout(600)

REPORT_KEYS = {
    "teacher_val_loss", "student_val_loss", "baseline_val_loss", "ternary_fraction",
    "critical_fraction", "train_tokens_per_s_teacher", "train_tokens_per_s_student",
}


def _write_inputs(root: Path) -> None:
    """A small slice of the seed (every domain) and the base tokenizer: the stage's inputs."""
    records = list(iter_jsonl(root / "data" / "01_raw" / "seed.jsonl"))[::25]
    write_jsonl(root / "data" / "05_model_input" / "train.jsonl", records[: len(records) * 4 // 5])
    write_jsonl(root / "data" / "05_model_input" / "validation.jsonl", records[len(records) * 4 // 5 :])
    Tokenizer.default().save(root / "data" / "06_models" / "tokenizer.json")


def _report(root: Path, name: str = "distillation") -> dict:
    return json.loads((root / "data" / "08_reporting" / f"{name}.json").read_text())


def _configured_critical_fraction(model: BitZeroLM) -> float:
    """Critical weights implied by the settings alone: round(ratio * rows) rows per layer."""
    layers = [m for _, m in model.bit_linears()]
    critical = sum(round(m.critical_ratio * m.out_features) * m.in_features for m in layers)
    return critical / sum(m.weight.numel() for m in layers)


def _runs() -> list:
    client = mlflow.tracking.MlflowClient()
    experiment = client.get_experiment_by_name("bitzero")
    return client.search_runs([experiment.experiment_id], "tags.mlflow.runName = 'distillation'")


def _check_outputs(root: Path) -> dict:
    report = _report(root)
    assert REPORT_KEYS <= set(report)
    teacher = load_checkpoint(root / "data" / "06_models" / "teacher")
    student = load_checkpoint(root / "data" / "06_models" / "student")
    assert not teacher.config.quantized and not teacher.bit_linears()
    assert student.config.quantized and student.config.critical_ratio == "adaptive"
    assert (root / "data" / "06_models" / "student" / "tokenizer.json").is_file()
    assert report["ternary_fraction"] == pytest.approx(1 - _configured_critical_fraction(student))
    assert report["critical_fraction"] == pytest.approx(1 - report["ternary_fraction"])
    assert 0.08 < report["critical_fraction"] < 0.16  # between the smallest and largest block ratio
    # Same settings, same sampler seed: the baseline trains on exactly the student's tokens.
    assert report["baseline"]["train_tokens"] == report["student"]["train_tokens"] > 0
    for key in ("teacher_val_loss", "student_val_loss", "baseline_val_loss"):
        assert 0 < report[key] < 10  # nats per token; ln(vocab) ~ 6.4 at initialisation
    layers = _report(root, "quantization")["layers"]
    assert len(layers) == len(student.bit_linears())
    for layer in layers.values():
        shares = layer["share_minus1"] + layer["share_zero"] + layer["share_plus1"]
        assert shares == pytest.approx(1.0) and layer["gamma"] > 0
    return report


def test_stage_trains_teacher_student_and_baseline(project: Path) -> None:
    _write_inputs(project)
    done = kedro_run(project, "--pipelines", "distillation", "--env", "test")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = _check_outputs(project)
    assert report["teacher"]["source"] == "trained"

    (run,) = _runs()
    client = mlflow.tracking.MlflowClient()
    history = client.get_metric_history(run.info.run_id, "student/train/kl")
    assert [m.step for m in history] == [2, 4, 6]  # log_every 2, six steps
    assert run.data.metrics["distillation.student_val_loss"] == pytest.approx(report["student_val_loss"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"distillation.json", "quantization.json", "teacher", "student"} <= artifacts

    # Register the logged teacher, then run the stage on it instead of training a new one.
    client.create_registered_model("bitzero-teacher")
    client.create_model_version(
        "bitzero-teacher", source=f"{run.info.artifact_uri}/teacher", run_id=run.info.run_id
    )
    done = kedro_run(
        project, "--pipelines", "distillation", "--env", "test",
        "--params", "distillation.teacher.registered_model=models:/bitzero-teacher/1",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    again = _report(project)
    assert again["teacher"]["source"] == "models:/bitzero-teacher/1"
    assert again["train_tokens_per_s_teacher"] is None
    assert again["teacher_val_loss"] == pytest.approx(report["teacher_val_loss"], rel=1e-5)


def test_a_registered_teacher_must_exist_and_hold_one_checkpoint(project: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no-such-teacher"):
        load_registered_model("models:/no-such-teacher/1")
    for name in ("a", "b"):
        save_checkpoint(BitZeroLM(ModelConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=16)), tmp_path / name)
    with pytest.raises(CheckpointError, match="found 2"):
        find_checkpoint(tmp_path)
    assert find_checkpoint(tmp_path / "a") == tmp_path / "a"


def test_torchrun_two_processes_write_once_and_track_once(project: Path) -> None:
    _write_inputs(project)
    # An earlier stage has created the tracking store (as `dvc repro` would): ranks only read it.
    mlflow.tracking.MlflowClient().create_experiment(
        "bitzero", artifact_location=os.environ["MLFLOW_ARTIFACT_LOCATION"]
    )
    done = torchrun_kedro(project, "--pipelines", "distillation", "--env", "test")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = _check_outputs(project)
    _, metadata = read_checkpoint_config(project / "data" / "06_models" / "student")
    assert metadata["role"] == "student"
    (run,) = _runs()  # rank 1 opened no run of its own
    assert run.data.metrics["distillation.teacher_val_loss"] == pytest.approx(report["teacher_val_loss"])
