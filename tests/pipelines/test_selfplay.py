"""The selfplay pipeline on the micro profile: a tiny student in, every output written and sane."""

import json
import os
import sqlite3
from pathlib import Path

import mlflow

from bitzero.model import load_checkpoint, save_checkpoint
from tests.pipelines.conftest import kedro_run, torchrun_kedro
from tests.tiny import tiny_model, tiny_tokenizer


def make_student(root: Path) -> Path:
    """A tiny ternary student and its full-precision teacher, as the distillation stage leaves them."""
    tokenizer = tiny_tokenizer()
    models = root / "data" / "06_models"
    save_checkpoint(tiny_model(tokenizer, seed=1), models / "teacher", tokenizer, {"stage": "test"})
    return save_checkpoint(tiny_model(tokenizer, seed=0, quantized=True), models / "student", tokenizer, {"stage": "test"})


def test_selfplay_pipeline_writes_model_buffers_and_report(project):
    make_student(project)
    run = kedro_run(project, "--pipelines", "selfplay", "--env", "test")
    assert run.returncode == 0, run.stderr[-3000:]

    model = load_checkpoint(project / "data" / "06_models" / "selfplay_student")
    assert model.config.n_embd == 64 and model.config.quantized
    assert (project / "data" / "06_models" / "selfplay_student" / "tokenizer.json").is_file()

    report = json.loads((project / "data" / "08_reporting" / "selfplay.json").read_text())
    heldout = [json.loads(line) for line in (project / "data" / "07_model_output" / "selfplay_heldout.jsonl").open()]
    buffer = [json.loads(line) for line in (project / "data" / "07_model_output" / "selfplay_buffer.jsonl").open()]
    assert report["heldout_tasks"] == len(heldout) > 0
    for key in ("heldout_solve_rate_before", "heldout_solve_rate_after", "valid_proposal_rate"):
        assert 0.0 <= report[key] <= 1.0
    assert set(report["per_type"]) == {"deduction", "abduction", "induction", "math"}
    assert set(report["per_level"]) == {"1"} and "teacher_ci95" in report["per_level"]["1"]
    assert report["heldout_teacher"]["overall"]["tasks"] == len(heldout)
    assert 0.0 <= report["heldout_solve_rate_teacher"] <= 1.0
    assert set(report["ppo_ablation"]) == {"ppo", "sft_only"}
    chosen = report["selected_model"]
    assert chosen in {"input", "warmup", "ppo", "sft_only"}
    assert report["validation_solve_rates"][chosen] == max(report["validation_solve_rates"].values())
    assert report["heldout_after"]["overall"]["tasks"] == len(heldout)
    assert report["proposals"]["made"] == 4 and report["sandbox_programs_per_s"] > 0
    # Every buffer task carries executor outputs, and no held-out task leaked into it.
    assert buffer and all(task["outputs"] for task in buffer)
    heldout_keys = {(t["kind"], t["program"], tuple(t["inputs"])) for t in heldout}
    assert not heldout_keys & {(t["kind"], t["program"], tuple(t["inputs"])) for t in buffer}
    # Step-wise metrics of both arms reached MLflow, next to the headline figures.
    with sqlite3.connect(project / "mlflow" / "mlflow.db") as db:
        keys = {row[0] for row in db.execute("SELECT DISTINCT key FROM metrics")}
    # (a micro model's rewards rarely vary, so PPO may have no sample with a non-zero advantage)
    assert {"selfplay.ppo/ppo/samples", "selfplay.ppo/ppo/in_band", "selfplay.ppo/buffer/size",
            "selfplay.ppo/proposals/valid_rate", "selfplay.sft_only/sft/loss",
            "selfplay.heldout_solve_rate_after"} <= keys
    # The solve rate of each iteration per arm: a DVC plot table, and in MLflow with its picture.
    rates = json.loads((project / "data" / "08_reporting" / "plots" / "selfplay_solve_rate.json").read_text())
    assert [row["iteration"] for row in rates] == [1]  # max_iterations: 1
    assert all(0.0 <= rates[0][arm] <= 1.0 for arm in ("ppo", "sft_only"))
    with sqlite3.connect(project / "mlflow" / "mlflow.db") as db:
        (ppo_rate,) = db.execute("SELECT value FROM metrics WHERE key = 'selfplay.ppo/solve_rate'").fetchone()
    assert rates[0]["ppo"] == ppo_rate
    client = mlflow.tracking.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("bitzero").experiment_id])
    assert {"plots/selfplay_solve_rate.json", "plots/selfplay_solve_rate.png"} <= {
        a.path for a in client.list_artifacts(run.info.run_id, "plots")}


def test_torchrun_two_ranks_self_play_and_write_once(project):
    """The PyTorchJob's command on two CPU ranks: one model, one report and one MLflow run."""
    make_student(project)
    mlflow.tracking.MlflowClient().create_experiment("bitzero", artifact_location=os.environ["MLFLOW_ARTIFACT_LOCATION"])
    run = torchrun_kedro(project, "--pipelines", "selfplay", "--env", "test")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((project / "data" / "08_reporting" / "selfplay.json").read_text())
    assert report["world_size"] == 2
    assert report["proposals"]["made"] == 2 * 4  # one iteration of 4 proposals on each rank
    assert load_checkpoint(project / "data" / "06_models" / "selfplay_student").config.n_embd == 64
    client = mlflow.tracking.MlflowClient()
    experiment = client.get_experiment_by_name("bitzero")
    (tracked,) = client.search_runs([experiment.experiment_id], "tags.mlflow.runName = 'selfplay'")
    assert tracked.data.metrics["selfplay.world_size"] == 2
