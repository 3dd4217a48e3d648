"""The selfplay pipeline on the micro profile: the lineage chosen by the gate's rule, the served
model self-played (or passed through with nothing to learn from), every output written and sane."""

import json
import os
import sqlite3
from pathlib import Path

import mlflow
import torch
from safetensors.torch import load_file

from bitzero.data.records import write_jsonl
from bitzero.model import load_checkpoint, read_checkpoint_config, save_checkpoint
from bitzero.selfplay.experiment import KEPT_INPUT, NOTHING_TO_LEARN, SELF_PLAYED
from tests.pipelines.conftest import kedro_run, torchrun_kedro
from tests.tiny import tiny_model, tiny_tokenizer

MODELS = Path("data") / "06_models"
# conf/test's gate factor is 1.1: the first pair serves the student, the second the teacher.
STUDENT_SERVED = {"student": 2.0, "teacher_fp32": 2.0}
TEACHER_SERVED = {"student": 9.0, "teacher_fp32": 2.5}


def make_student(root: Path, held_out_nll: dict[str, float] = STUDENT_SERVED) -> Path:
    """A tiny ternary student, its full-precision teacher and the report with their held-out NLLs,
    as the distillation stage leaves them, and validation conversations."""
    tokenizer = tiny_tokenizer()
    models = root / MODELS
    save_checkpoint(tiny_model(tokenizer, seed=1), models / "teacher", tokenizer, {"stage": "test"})
    reporting = root / "data" / "08_reporting"
    reporting.mkdir(parents=True, exist_ok=True)
    (reporting / "distillation.json").write_text(json.dumps({"held_out_nll": held_out_nll}))
    chat = [{"role": "user", "content": "How was your day?"}, {"role": "assistant", "content": "Quiet, thank you."}]
    write_jsonl(root / "data" / "05_model_input" / "validation.jsonl",  # the chat guard's conversations
                [{"id": f"v{i}", "type": "conversation", "source": "seed", "conversation": chat} for i in range(3)])
    return save_checkpoint(tiny_model(tokenizer, seed=0, quantized=True), models / "student", tokenizer, {"stage": "test"})


def _report(root: Path, name: str) -> dict:
    return json.loads((root / "data" / "08_reporting" / f"{name}.json").read_text())


def _same_weights(root: Path, a: str, b: str) -> bool:
    first, second = (load_file(root / MODELS / name / "model.safetensors") for name in (a, b))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_selfplay_pipeline_writes_model_buffers_and_report(project):
    make_student(project)
    run = kedro_run(project, "--pipelines", "selfplay", "--env", "test")
    assert run.returncode == 0, run.stderr[-3000:]

    lineage = _report(project, "lineage")
    assert lineage["served"] == "student" and lineage["ratio"] == 1.0 and lineage["gate_factor"] == 1.1
    model = load_checkpoint(project / MODELS / "selfplay_model")
    assert model.config.n_embd == 64 and model.config.quantized
    assert read_checkpoint_config(project / MODELS / "selfplay_model")[1]["lineage"] == "student"
    assert (project / MODELS / "selfplay_model" / "tokenizer.json").is_file()

    report = _report(project, "selfplay")
    assert report["lineage"] == "student" and report["verified_targets"] > 0
    # A shipped candidate passed the chat guard (conf/test's tolerance lets a tiny model's noise by).
    assert (report["status"], report["chat_guard"]) == (KEPT_INPUT, None) if report["selected_model"] == "input" \
        else report["status"] == SELF_PLAYED and report["chat_guard"]["passed"]
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
    assert load_checkpoint(project / MODELS / "selfplay_model").config.n_embd == 64
    client = mlflow.tracking.MlflowClient()
    experiment = client.get_experiment_by_name("bitzero")
    (tracked,) = client.search_runs([experiment.experiment_id], "tags.mlflow.runName = 'selfplay'")
    assert tracked.data.metrics["selfplay.world_size"] == 2


def test_while_the_teacher_is_served_self_play_trains_the_teacher(project):
    """The distilled student is predicted to fail the gate: the teacher lineage is self-played (its
    own held-out rate is the before figure; no reference is measured) and named in every output."""
    make_student(project, TEACHER_SERVED)
    run = kedro_run(project, "--pipelines", "selfplay", "--env", "test")
    assert run.returncode == 0, run.stderr[-3000:]
    lineage = _report(project, "lineage")
    assert lineage["served"] == "teacher" and "9.0000 > 1.1 x teacher NLL 2.5000" in lineage["reason"]
    assert not load_checkpoint(project / MODELS / "selfplay_model").config.quantized
    assert read_checkpoint_config(project / MODELS / "selfplay_model")[1]["lineage"] == "teacher"
    report = _report(project, "selfplay")
    assert report["lineage"] == "teacher" and report["heldout_teacher"] is None
    assert report["heldout_before"]["overall"]["tasks"] == report["heldout_tasks"] > 0
    shipped = report["selected_model"]
    assert _same_weights(project, "teacher", "selfplay_model") == (shipped == "input")


def test_with_nothing_to_learn_from_the_input_passes_through(project):
    """Answers and proposals that cannot fit their token budgets leave no verified target, and a
    model that cannot answer solves nothing: the stage says so and ships its input unchanged."""
    make_student(project, TEACHER_SERVED)
    budgets = ",".join(f"selfplay.answer_tokens.{kind}=1" for kind in ("deduction", "abduction", "induction", "math"))
    run = kedro_run(project, "--pipelines", "selfplay", "--env", "test", "--params", f"{budgets},selfplay.proposal_tokens=1",
                    env={"COLUMNS": "300"})  # the log's lines unwrapped
    assert run.returncode == 0, run.stderr[-3000:]
    report = _report(project, "selfplay")
    assert report["status"] == NOTHING_TO_LEARN and report["lineage"] == "teacher"
    assert report["verified_targets"] == 0 and report["heldout_solve_rate_before"] == 0.0
    assert report["heldout_before"]["overall"]["ci95"][0] == 0.0
    assert NOTHING_TO_LEARN in run.stdout + run.stderr
    assert _same_weights(project, "teacher", "selfplay_model")
