"""The export stage as a user runs it: `kedro run --pipelines export --env test`."""

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest

from bitzero.companion.embeddings import ensure_embedder
from bitzero.companion.emotion import EMOTION_FILE, ENCODER_FILE, ENCODER_TOKENIZER_FILE, LABELS, EmotionClassifier
from bitzero.data.records import write_jsonl
from bitzero.export.lineage import predict_served
from bitzero.model import save_checkpoint
from bitzero.model.pretrained import ternary_student
from bitzero.serving.champion import champion_bundle
from bitzero.serving.runtime import BundleRuntime
from tests.export.conftest import TINY_INT4_BITS, visible
from tests.pipelines.conftest import kedro_run
from tests.service.conftest import EMBEDDER_CACHE
from tests.tiny import tiny_emotion_encoder, tiny_model, tiny_tokenizer

pytestmark = pytest.mark.timeout(600)


def _inputs(root: Path) -> None:
    """What teacher, distillation, selfplay, personalize, augmentation, embedder and emotion would
    leave while the teacher is the served lineage: the imported teacher, the distilled student, the
    teacher trained by self-play and personalize with the lineage record, held-out records of two
    sources, the sentence embedder (a copy of the tests' converted one) and an emotion classifier."""
    models = root / "data" / "06_models"
    ensure_embedder(EMBEDDER_CACHE)
    shutil.copytree(EMBEDDER_CACHE, models / "embedder")
    tokenizer = tiny_tokenizer()
    teacher = visible(tiny_model(tokenizer))
    save_checkpoint(teacher, models / "teacher", tokenizer, metadata={"mlflow_run_id": "teacher-run-1"})
    save_checkpoint(ternary_student(teacher, critical_ratio=0.1), models / "student", tokenizer,
                    metadata={"mlflow_run_id": "distillation-run-1"})
    save_checkpoint(visible(tiny_model(tokenizer, seed=2)), models / "personalized_model", tokenizer,
                    metadata={"mlflow_run_id": "personalize-run-1", "lineage": "teacher"})
    (root / "data" / "08_reporting").mkdir(parents=True, exist_ok=True)
    (root / "data" / "08_reporting" / "lineage.json").write_text(json.dumps(predict_served(9.0, 2.5, 1.1)))
    records = [
        {"id": f"v{i}", "type": "conversation", "source": "seed" if i % 2 else "persona",
         "conversation": [{"role": "user", "content": f"How was day {i}?"},
                          {"role": "assistant", "content": "Quiet, thank you."}]}
        for i in range(5)
    ]
    write_jsonl(root / "data" / "05_model_input" / "validation.jsonl", records)
    EmotionClassifier(np.zeros((0, len(LABELS))), np.zeros(len(LABELS)), encoder=tiny_emotion_encoder(LABELS)).save(
        models / "emotion" / EMOTION_FILE, {"source": "test"})


def test_export_stage_writes_two_bundles_gates_and_registers(project: Path) -> None:
    _inputs(project)
    done = kedro_run(project, "--pipelines", "export", "--env", "test")
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads((project / "data" / "08_reporting" / "export.json").read_text())
    bundles_dir = project / "data" / "06_models" / "bundles"
    student, teacher = report["bundles"]["student"], report["bundles"]["teacher"]
    assert student["variants"]["exact"]["max_rel_error"] <= 0.05 and student["variants"]["exact"]["greedy_identical"] == 1.0
    assert student["variants"]["nbits"]["max_rel_error"] <= 0.15
    for bundle in (student, teacher):
        for variant, figures in bundle["variants"].items():
            assert figures["layerwise_max_rel_error"] <= bundle["tolerances"][variant]
    assert teacher["variants"]["int4"]["bits_per_weight_linear"] == pytest.approx(TINY_INT4_BITS)
    assert set(student["held_out_nll"]["per_source"]) == {"seed", "persona"}
    # The served lineage's trained checkpoint became its bundle; the student came from distillation.
    assert student["source_run_id"] == "distillation-run-1" and teacher["source_run_id"] == "personalize-run-1"
    assert report["trained_lineage"] == "teacher" and report["champion_is_trained_lineage"]
    assert report["student_bytes"] == (bundles_dir / "student" / "nbits" / "model.onnx").stat().st_size
    assert report["teacher_bytes"] == (bundles_dir / "teacher" / "int4" / "model.onnx").stat().st_size

    # The conversation eval ran on both bundles through the service's prompt path: tiny random
    # models talk noise, so both fail it, and the gate keeps the teacher as the fallback.
    for bundle in (student, teacher):
        assert bundle["conversation_eval"]["replies"] > 0 and not bundle["conversation_eval"]["passed"]
        assert bundle["decoding"]["temperature"] is not None
    plot = json.loads((project / "data" / "08_reporting" / "plots" / "conversation_eval.json").read_text())
    assert [row["bundle"] for row in plot] == ["student", "teacher"] and "loop_rate" in plot[0]

    # The gate: the rule, the report and champion.json agree.
    assert report["champion"] == "teacher" and "the student's conversation eval failed" in report["reason"]
    champion = json.loads((bundles_dir / "champion.json").read_text())
    assert champion["champion"] == report["champion"] and champion["reason"] == report["reason"]
    assert champion_bundle(bundles_dir) == bundles_dir / report["champion"]

    # Both bundles carry the emotion classifier and serve.
    for kind in ("student", "teacher"):
        manifest = json.loads((bundles_dir / kind / "bitzero.json").read_text())
        assert set(manifest["extras"]) == {EMOTION_FILE, ENCODER_FILE, ENCODER_TOKENIZER_FILE}
        assert EmotionClassifier.load(bundles_dir / kind / EMOTION_FILE).encoder is not None
        runtime = BundleRuntime.load(bundles_dir / kind, manifest["default_variant"])
        chunks = list(runtime.stream(runtime.tokenizer.encode_chat(
            [{"role": "user", "content": "hi"}], add_generation_prompt=True), max_tokens=4))
        assert chunks[-1].finish_reason in ("stop", "length")

    # Two versions of one registered model; the alias `champion` names the gate's choice.
    client = mlflow.tracking.MlflowClient()
    versions = {v.tags["kind"]: int(v.version) for v in client.search_model_versions("name = 'bitzero'")}
    assert versions == {"student": student["registered_model"]["version"], "teacher": teacher["registered_model"]["version"]}
    assert int(client.get_model_version_by_alias("bitzero", "champion").version) == versions[report["champion"]]
    assert champion["registered_version"] == versions[report["champion"]]
    artifacts = {f.path for f in client.list_logged_model_artifacts(teacher["registered_model"]["logged_model_id"])}
    assert {"bitzero.json", "tokenizer.json", "int4", EMOTION_FILE} <= artifacts
    (run,) = client.search_runs([client.get_experiment_by_name("bitzero").experiment_id])
    assert run.data.metrics["export.student_nll"] == pytest.approx(report["student_nll"])


def test_export_stage_without_a_checkpoint_stops_with_a_clear_message(project: Path) -> None:
    done = kedro_run(project, "--pipelines", "export", "--env", "test")
    assert done.returncode != 0
    assert "does not exist; run the" in done.stdout + done.stderr


def test_a_student_that_fails_its_checks_is_left_out_and_the_teacher_served(project: Path) -> None:
    """An impossible nbits tolerance makes the student's export fail: the stage still succeeds,
    the teacher is exported, registered and champion, the reason is in export.json and
    champion.json, the student's earlier bundle is gone, and the service serves the teacher."""
    _inputs(project)
    assert kedro_run(project, "--pipelines", "export", "--env", "test").returncode == 0  # an earlier, passing run
    bundles_dir = project / "data" / "06_models" / "bundles"
    assert (bundles_dir / "student").is_dir()
    done = kedro_run(project, "--pipelines", "export", "--env", "test", "--params", "export.student.tolerances.nbits=1e-12")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The student was left out" in done.stdout + done.stderr

    report = json.loads((project / "data" / "08_reporting" / "export.json").read_text())
    student = report["bundles"]["student"]
    assert report["champion"] == "teacher" and report["student_nll"] is None
    assert student["status"] == "left out" and "nbits export's" in student["failure"]
    assert student["failure"] in report["reason"]
    assert student["variants"]["nbits"]["layerwise_max_rel_error"] > student["tolerances"]["nbits"] == 1e-12
    champion = json.loads((bundles_dir / "champion.json").read_text())
    assert champion["champion"] == "teacher" and champion["bundles"] == {"teacher": "teacher"}
    assert champion["reason"] == report["reason"] and champion["held_out_nll"]["student"] is None
    assert not (bundles_dir / "student").exists()

    from bitzero.service.model import load_models

    models = load_models(bundles_dir)
    assert models.ids == ["bitzero-teacher-int4"] and models.champion.id == "bitzero-teacher-int4"
    client = mlflow.tracking.MlflowClient()
    champion_version = client.get_model_version_by_alias("bitzero", "champion")
    assert champion_version.tags["kind"] == "teacher"
