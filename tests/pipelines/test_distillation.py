"""The teacher and distillation stages on the micro profile (a tiny random Llama checkpoint as the
teacher): single process and torchrun."""

import json
import os
from pathlib import Path

import mlflow
import pytest

from bitzero.data.records import iter_jsonl, write_jsonl
from bitzero.model import BitZeroLM, load_checkpoint, read_checkpoint_config
from bitzero.text import Tokenizer
from tests.pipelines.conftest import kedro_run, torchrun_kedro

pytestmark = pytest.mark.timeout(600)
MODELS = ("teacher_fp32", "ptq", "student", "ce_only")


def _write_inputs(root: Path) -> None:
    """A slice of the seed (every domain) and the teacher's tokenizer (the teacher is there)."""
    records = list(iter_jsonl(root / "data" / "01_raw" / "seed.jsonl"))[::25]
    for index, record in enumerate(records):
        record["source"] = ("seed", "other")[index % 2]
    write_jsonl(root / "data" / "05_model_input" / "train.jsonl", records[: len(records) * 4 // 5])
    write_jsonl(root / "data" / "05_model_input" / "validation.jsonl", records[len(records) * 4 // 5 :])
    Tokenizer.load(root / "data" / "06_models" / "teacher_tokenizer.json").save(
        root / "data" / "06_models" / "tokenizer.json")


def _report(root: Path, name: str = "distillation") -> dict:
    return json.loads((root / "data" / "08_reporting" / f"{name}.json").read_text())


def _runs(name: str = "distillation") -> list:
    client = mlflow.tracking.MlflowClient()
    experiment = client.get_experiment_by_name("bitzero")
    return client.search_runs([experiment.experiment_id], f"tags.mlflow.runName = '{name}'")


def _check_outputs(root: Path) -> dict:
    report = _report(root)
    nll = report["held_out_nll"]
    assert set(nll) == set(MODELS)
    assert set(report["held_out_nll_by_source"]["student"]) == {"seed", "other"}
    assert all(0 < value < 20 for value in nll.values())
    # Training recovers some of what rounding to ternary lost. (On this random micro teacher the
    # rounding itself barely moves the NLL: SubLN's gains start at their input's RMS.)
    assert nll["student"] < nll["ptq"] and report["student_beats_ptq"]
    # The conversion ladder: PTQ is its first rung; a later rung is kept only if it lowers the NLL.
    ladder = report["conversion"]
    assert list(ladder) == ["absmean", "fitted_scales", "saliency", "gptq", "blockwise"]
    assert ladder["absmean"]["held_out_nll"] == nll["ptq"] and ladder["absmean"]["bits_per_weight"] > 2
    best = nll["ptq"]
    for rung in list(ladder.values())[1:]:
        assert rung["kept"] == (rung["held_out_nll"] < best) and rung["minutes"] >= 0
        best = min(best, rung["held_out_nll"])
    assert report["student_vs_teacher"] == pytest.approx(nll["student"] / nll["teacher_fp32"])
    # Same settings and sampler seed: the baseline trained on exactly the student's tokens.
    assert report["ce_only"]["train_tokens"] == report["student"]["train_tokens"] > 0
    student = load_checkpoint(root / "data" / "06_models" / "student")
    teacher = load_checkpoint(root / "data" / "06_models" / "teacher")
    assert student.config.quantized and student.config.sub_norm and student.config.critical_mask_frozen
    assert student.config.n_layer == teacher.config.n_layer and student.config.n_kv_head == 2
    assert 0.08 < report["critical_fraction"] < 0.16  # between the smallest and largest block ratio
    layers = _report(root, "quantization")["layers"]
    assert len(layers) == len(student.bit_linears())
    for layer in layers.values():
        shares = layer["share_minus1"] + layer["share_zero"] + layer["share_plus1"]
        assert shares == pytest.approx(1.0) and layer["gamma"] > 0
    return report


def test_teacher_stage_imports_registers_and_tries_the_checkpoint(project: Path) -> None:
    done = kedro_run(project, "--pipelines", "teacher", "--env", "test")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    model = load_checkpoint(project / "data" / "06_models" / "teacher")
    assert isinstance(model, BitZeroLM) and not model.config.quantized
    _, metadata = read_checkpoint_config(project / "data" / "06_models" / "teacher")
    assert metadata["architecture"] == "LlamaForCausalLM" and metadata["parameters"] == model.num_params()
    tokenizer = Tokenizer.load(project / "data" / "06_models" / "teacher_tokenizer.json")
    assert tokenizer.vocab_size == model.config.vocab_size
    report = _report(project, "teacher")
    assert report["sample"]["prompt"] == "hello there" and report["sample"]["decode_tokens_per_s"] > 0
    (version,) = mlflow.tracking.MlflowClient().search_model_versions("name = 'bitzero-teacher'")
    assert version.status == "READY"


def test_stage_converts_distills_and_measures_the_baselines(project: Path) -> None:
    _write_inputs(project)
    done = kedro_run(project, "--pipelines", "distillation", "--env", "test")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = _check_outputs(project)
    (run,) = _runs()
    client = mlflow.tracking.MlflowClient()
    history = client.get_metric_history(run.info.run_id, "student/train/relation_kl")
    assert [m.step for m in history] == [2, 4, 6]  # log_every 2, six steps
    assert run.data.metrics["distillation.held_out_nll.student"] == pytest.approx(report["held_out_nll"]["student"])
    assert run.data.metrics["distillation.conversion.gptq.held_out_nll"] == pytest.approx(
        report["conversion"]["gptq"]["held_out_nll"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"distillation.json", "quantization.json", "student"} <= artifacts
    loss = _check_plots(project, report)
    (last_ce,) = [m.value for m in client.get_metric_history(run.info.run_id, "student/train/ce") if m.step == 6]
    assert loss[-1]["student_train"] == pytest.approx(last_ce)  # the student's CE, not its whole objective
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {f"plots/{name}.{ext}" for name in ("distillation_loss", "quantization_shares")
            for ext in ("json", "png")} <= plots


def _check_plots(root: Path, report: dict) -> list[dict]:
    """The DVC plot tables come from the run: the validation curve runs from the converted student
    (the ladder's best rung) to the held-out NLL."""
    converted = min(row["held_out_nll"] for row in report["conversion"].values() if row["kept"])
    loss = _report(root, "plots/distillation_loss")
    assert [row["step"] for row in loss] == list(range(7))  # step 0 (PTQ), then six training steps
    for arm in ("student", "ce_only"):
        assert loss[0][f"{arm}_validation"] == converted and loss[0][f"{arm}_train"] is None
        assert loss[-1][f"{arm}_validation"] == report["held_out_nll"][arm]
    assert loss[-1]["ce_only_train"] == report["ce_only"]["train_loss"]  # CE is the baseline's whole objective
    shares = _report(root, "plots/quantization_shares")
    layers = list(_report(root, "quantization")["layers"].values())
    assert [row["layer"] for row in shares] == list(range(len(layers)))
    assert shares[0]["zero"] == layers[0]["share_zero"]
    assert all(row["minus_one"] + row["zero"] + row["plus_one"] == pytest.approx(1.0) for row in shares)
    return loss


def test_torchrun_two_processes_write_once_and_track_once(project: Path) -> None:
    _write_inputs(project)
    # An earlier stage has created the tracking store (as `dvc repro` would): ranks only read it.
    mlflow.tracking.MlflowClient().create_experiment(
        "bitzero", artifact_location=os.environ["MLFLOW_ARTIFACT_LOCATION"]
    )
    done = torchrun_kedro(project, "--pipelines", "distillation", "--env", "test")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _check_outputs(project)
    _, metadata = read_checkpoint_config(project / "data" / "06_models" / "student")
    assert metadata["role"] == "student"
    assert len(_runs()) == 1  # rank 1 opened no run of its own
