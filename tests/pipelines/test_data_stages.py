"""The vocabulary and augmentation stages, run as a user runs them: `kedro run` and `dvc repro`."""

import json
from pathlib import Path

import mlflow
import pytest

from bitzero.data.mix import group_id
from bitzero.data.records import iter_jsonl
from bitzero.text import Tokenizer
from tests.pipelines.conftest import dvc, kedro_run

pytestmark = pytest.mark.timeout(600)


def _report(root: Path, name: str) -> dict:
    return json.loads((root / "data" / "08_reporting" / f"{name}.json").read_text())


def test_vocabulary_stage_writes_records_tokenizer_and_report(project: Path) -> None:
    done = kedro_run(project, "--pipelines", "vocabulary", "--env", "test")
    assert done.returncode == 0, done.stdout + done.stderr

    report = _report(project, "vocabulary")
    records = list(iter_jsonl(project / "data" / "03_primary" / "records.jsonl"))
    seed_lines = (project / "data" / "01_raw" / "seed.jsonl").read_text().splitlines()
    assert report["records_total"] == len(seed_lines) == len(records) + report["records_quarantined"]
    assert report["coverage"] >= 0.5 and report["round_trip_failures"] == 0
    tokenizer = Tokenizer.load(project / "data" / "06_models" / "tokenizer.json")
    teacher = Tokenizer.load(project / "data" / "06_models" / "teacher_tokenizer.json")
    # Adaptation appended frequent pieces of the seed; the teacher's ids are unchanged.
    assert report["vocab_size"] == tokenizer.vocab_size == teacher.vocab_size + report["adapted_tokens"]
    assert 0 < report["adapted_tokens"] <= 8
    assert all(tokenizer.id_to_token(i) == teacher.id_to_token(i) for i in range(teacher.vocab_size))

    client = mlflow.tracking.MlflowClient()
    experiment = client.get_experiment_by_name("bitzero")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["dvc_stage"].startswith("none")
    assert run.data.tags["git_commit"]
    assert run.data.params["vocabulary.min_coverage"] == "0.5"
    assert run.data.metrics["vocabulary.records_total"] == report["records_total"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"vocabulary.json", "tokenizer.json", "quarantine.jsonl"} <= artifacts


BAD_LINES = [
    b'{"id": "broken", "type": "math"\n',  # malformed JSON
    b'["not", "an", "object"]\n',
    b'{"id": "r1", "type": "conversation", "conversation": [{"role": "wizard", "content": "hi"}]}\n',
    b'{"id": "r2", "type": "conversation", "conversation": [{"role": "user", "content": ""}]}\n',
    b'{"id": "r3", "type": "conversation", "conversation": "hello"}\n',
    b'{"id": "r4", "type": "math", "conversation": [{"role": "user", "content": "2+2?"}]}\n',
    b'{"id": "r5", "type": "code", "conversation": [{"role": "user", "content": "x"}], "tests": 5}\n',
    json.dumps(
        {"id": "r6", "type": "conversation", "conversation": [{"role": "user", "content": "a" * 50_000}]}
    ).encode() + b"\n",
    b"\xff\xfe not utf-8\n",
]


FEEDBACK = json.dumps(
    {
        "id": "feedback-1",
        "type": "conversation",
        "source": "feedback",
        "conversation": [
            {"role": "user", "content": "Call me Sam, please."},
            {"role": "assistant", "content": "Of course, Sam. I will remember that."},
        ],
    }
).encode() + b"\n"


def test_bad_input_ends_in_quarantine_with_reasons_and_nothing_is_lost(project: Path) -> None:
    seed = project / "data" / "01_raw" / "seed.jsonl"
    good = len(seed.read_bytes().splitlines())
    with seed.open("ab") as handle:
        handle.writelines(BAD_LINES)
    feedback = project / "data" / "01_raw" / "feedback"
    (feedback / "export-1.jsonl").write_bytes(FEEDBACK + BAD_LINES[0])

    done = kedro_run(project, "--pipelines", "vocabulary", "--env", "test")
    assert done.returncode == 0, done.stdout + done.stderr

    quarantine = list(iter_jsonl(project / "data" / "02_intermediate" / "quarantine.jsonl"))
    records = list(iter_jsonl(project / "data" / "03_primary" / "records.jsonl"))
    assert len(quarantine) == len(BAD_LINES) + 1
    assert any(row["origin"] == "data/01_raw/feedback/export-1.jsonl" for row in quarantine)
    assert len(records) == good + 1
    assert records[-1]["id"] == "feedback-1"
    assert all(row["reasons"] for row in quarantine)
    reasons = " ".join(reason for row in quarantine for reason in row["reasons"]).lower()
    for expected in ("malformed json", "not a json object", "role", "utf-8"):
        assert expected in reasons


def test_too_much_bad_input_stops_with_a_clear_message_not_a_traceback(project: Path) -> None:
    seed = project / "data" / "01_raw" / "seed.jsonl"
    seed.write_bytes(seed.read_bytes()[:20_000].rsplit(b"\n", 1)[0] + b"\n" + b"".join(BAD_LINES) * 3)

    done = kedro_run(project, "--pipelines", "vocabulary", "--env", "test")
    assert done.returncode == 1
    assert "error: Stage vocabulary stopped:" in done.stderr
    assert "are quarantined, more than the allowed" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert (project / "data" / "02_intermediate" / "quarantine.jsonl").exists()


def test_augmentation_stage_splits_by_id_and_reports_the_mix(project: Path) -> None:
    assert kedro_run(project, "--pipelines", "vocabulary", "--env", "test").returncode == 0
    done = kedro_run(project, "--pipelines", "augmentation", "--env", "test")
    assert done.returncode == 0, done.stdout + done.stderr

    report = _report(project, "augmentation")
    for key in ("variants_made", "variants_skipped", "train_records", "validation_records", "domain_mix"):
        assert key in report
    assert report["variants_made"] > 0
    assert abs(sum(report["domain_mix"].values()) - 1.0) < 1e-6
    train = list(iter_jsonl(project / "data" / "05_model_input" / "train.jsonl"))
    validation = list(iter_jsonl(project / "data" / "05_model_input" / "validation.jsonl"))
    assert len(validation) == report["validation_records"] > 0
    assert any(r.get("parent_id") for r in train + validation)
    assert not {group_id(r) for r in train} & {group_id(r) for r in validation}


def test_dvc_repro_runs_once_then_only_what_changed(dvc_project: Path) -> None:
    project = dvc_project
    first = dvc(project, "repro", "augmentation")
    assert all(f"Running stage '{name}'" in first for name in ("teacher", "vocabulary", "augmentation"))
    assert (project / "dvc.lock").exists()

    second = dvc(project, "repro", "augmentation")
    assert "Running stage" not in second

    params = project / "conf" / "base" / "parameters_augmentation.yml"
    params.write_text(params.read_text().replace("seed: 13", "seed: 14"))
    third = dvc(project, "repro", "augmentation")
    assert "Running stage 'augmentation'" in third
    assert "Running stage 'vocabulary'" not in third
