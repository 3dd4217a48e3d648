"""The personalize stage on the micro profile: a pass-through without feedback; with feedback pairs a
DPO step on the served lineage (student or teacher) that raises held-out preference accuracy; and
the whole path from the service's feedback."""

import json
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from bitzero.cli import main as bitzero
from bitzero.data.feedback import feedback_record
from bitzero.data.records import write_jsonl
from bitzero.export.lineage import predict_served
from bitzero.model import save_checkpoint
from bitzero.service.app import create_app
from bitzero.service.settings import Settings
from tests.pipelines.conftest import kedro_run
from tests.service.conftest import EMBEDDER_CACHE, FakeModel
from tests.tiny import tiny_model, tiny_tokenizer
from tests.train.test_dpo import synthetic_pairs

NLLS = {"student": (2.0, 2.0), "teacher": (9.0, 2.5)}  # (student, teacher): the gate's rule serves the key
CHAT = [{"role": "user", "content": "How was your day?"}, {"role": "assistant", "content": "Quiet, thank you."}]


def _self_played(root: Path, lineage: str = "student") -> None:
    """What selfplay leaves: the served lineage's tiny model (ternary for the student) and the record."""
    tokenizer = tiny_tokenizer()
    save_checkpoint(tiny_model(tokenizer, quantized=lineage == "student"), root / "data" / "06_models" / "selfplay_model",
                    tokenizer, {"stage": "selfplay", "lineage": lineage})
    reporting = root / "data" / "08_reporting"
    reporting.mkdir(parents=True, exist_ok=True)
    (reporting / "lineage.json").write_text(json.dumps(predict_served(*NLLS[lineage], gate_factor=1.1)))


def _inputs(root: Path, records: list[dict], lineage: str = "student") -> None:
    """What selfplay and vocabulary/augmentation leave: the self-played model, records, validation."""
    _self_played(root, lineage)
    write_jsonl(root / "data" / "03_primary" / "records.jsonl", records)
    write_jsonl(root / "data" / "05_model_input" / "validation.jsonl",
                [{"id": f"v{i}", "type": "conversation", "source": "seed", "conversation": CHAT} for i in range(3)])


def _report(root: Path) -> dict:
    return json.loads((root / "data" / "08_reporting" / "personalize.json").read_text())


def _weights(root: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(root / "data" / "06_models" / name / "model.safetensors")


def _unchanged(root: Path) -> bool:
    before, after = _weights(root, "selfplay_model"), _weights(root, "personalized_model")
    return all(torch.equal(before[k], after[k]) for k in before)


def test_without_feedback_pairs_the_model_passes_through(project: Path) -> None:
    _inputs(project, [{"id": "s1", "type": "conversation", "source": "seed", "conversation": CHAT}], "teacher")
    run = kedro_run(project, "--pipelines", "personalize", "--env", "test", env={"COLUMNS": "300"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert _report(project) == {"lineage": "teacher", "status": "nothing to learn from: no feedback pairs", "pairs": 0,
                                "kept_pre_step_model": True}
    assert "the input passes through" in run.stdout + run.stderr
    assert _unchanged(project)


def _feedback_records() -> list[dict]:
    train, heldout = synthetic_pairs()
    records = [feedback_record(p.id, p.prompt, p.rejected, -1, p.chosen) for p in train + heldout]
    records.append(feedback_record("bare", train[0].prompt, "def add", -1, None))  # one-sided
    return records


@pytest.mark.parametrize("lineage", ["student", "teacher"])
def test_feedback_pairs_train_the_served_lineage(project: Path, lineage: str) -> None:
    """DPO changes the served lineage's checkpoint and raises its held-out preference accuracy."""
    _inputs(project, _feedback_records(), lineage)
    run = kedro_run(project, "--pipelines", "personalize", "--env", "test")
    assert run.returncode == 0, run.stderr[-3000:]
    report = _report(project)
    assert report["status"] == "personalized" and report["pairs"] == 13 and report["lineage"] == lineage
    assert report["after"]["preference_accuracy"] > report["before"]["preference_accuracy"]
    assert not _unchanged(project)
    config = json.loads((project / "data" / "06_models" / "personalized_model" / "config.json").read_text())
    assert config["metadata"]["stage"] == "personalize" and config["metadata"]["mlflow_run_id"]
    assert config["metadata"]["lineage"] == lineage and config["model"]["quantized"] == (lineage == "student")


def test_feedback_from_the_service_trains_through_the_stages(project: Path, tmp_path: Path) -> None:
    """Chat with the service (a fake model that echoes), correct its replies, export the consented
    feedback, then vocabulary -> augmentation -> personalize on the micro profile."""
    from bitzero.companion.embeddings import ensure_embedder

    database = f"sqlite:///{tmp_path}/companion.db"
    settings = Settings(database_url=database, bundles=tmp_path / "no-bundle", embedder=EMBEDDER_CACHE,
                        feedback_export=tmp_path / "unused.jsonl", emotion_model=tmp_path / "none.json",
                        erasure_ledger=tmp_path / "erasures.jsonl", allowed_hosts="testserver")
    # Corrections longer than the echoed replies, so an untrained model gives them the lower log-prob.
    warm = ["thanks my friend, you are so kind and I love hiking in the mountains with you today",
            "hello there my friend, I am fine, thanks! I love the mountains and my dog today",
            "you are a kind companion, thanks for telling me, I love hiking with my dog today",
            "I feel you my friend, that sounds hard. thanks for telling me how you are today"]
    questions = [f"Day {i}?" for i in range(24)]
    with TestClient(create_app(settings, model=FakeModel(), embedder=ensure_embedder(EMBEDDER_CACHE))) as client:
        client.patch("/v1/privacy", json={"allow_training": True})
        for i, question in enumerate(questions):
            reply = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": question}]}).json()
            text = warm[i % len(warm)] if i else None  # the first: a thumbs-down without a correction
            assert client.post("/v1/feedback", json={"message_id": reply["id"], "score": -1, "text": text}).status_code == 201
    export = project / "data" / "01_raw" / "feedback" / "service.jsonl"
    assert bitzero(["--database-url", database, "feedback", "export", "--out", str(export)]) == 0
    _self_played(project)

    run = kedro_run(project, "--pipelines", "vocabulary,augmentation,personalize", "--env", "test")
    assert run.returncode == 0, run.stderr[-3000:]
    validation = (project / "data" / "05_model_input" / "validation.jsonl").read_text()
    train = [json.loads(line) for line in (project / "data" / "05_model_input" / "train.jsonl").open()]
    assert "feedback-" not in validation
    assert len({r["id"] for r in train if r["id"].startswith("feedback-")}) == 23  # the bare one is not imitated
    report = _report(project)
    assert report["pairs"] == 24 and report["status"] == "personalized"
    assert report["after"]["preference_accuracy"] > report["before"]["preference_accuracy"]
    print(json.dumps({k: report[k] for k in ("before", "after", "validation_nll_change", "train_pairs", "heldout_pairs")}))
