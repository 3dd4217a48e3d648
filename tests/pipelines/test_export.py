"""The export stage as a user runs it: `kedro run --pipelines export --env test`."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from bitzero.companion.emotion import EMOTION_FILE, LABELS, EmotionClassifier
from bitzero.data.records import write_jsonl
from bitzero.export.runtime import BundleRuntime
from bitzero.model import BitZeroLM, ModelConfig, save_checkpoint
from bitzero.text import Tokenizer
from tests.pipelines.conftest import kedro_run

pytestmark = pytest.mark.timeout(600)

REPORT_KEYS = {
    "bits_per_weight_ternary", "model_bytes", "fp32_model_bytes", "parity_max_rel_error_exact",
    "parity_max_rel_error_nbits", "greedy_agreement_nbits", "provider",
}


def _inputs(root: Path) -> None:
    """What selfplay, augmentation and emotion would leave: a tiny student checkpoint, held-out records
    and an emotion classifier."""
    tokenizer_path = Tokenizer.default().save(root / "data" / "06_models" / "tokenizer.json")
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=Tokenizer.default().vocab_size, n_layer=2, n_head=4, n_embd=64, block_size=96)
    save_checkpoint(BitZeroLM(config), root / "data" / "06_models" / "selfplay_student", tokenizer_path,
                    metadata={"mlflow_run_id": "selfplay-run-1"})
    records = [
        {"id": f"v{i}", "type": "conversation", "source": "seed",
         "conversation": [{"role": "user", "content": f"How was day {i}?"},
                          {"role": "assistant", "content": "Quiet, thank you."}]}
        for i in range(5)
    ]
    write_jsonl(root / "data" / "05_model_input" / "validation.jsonl", records)
    EmotionClassifier(np.zeros((8, len(LABELS))), np.zeros(len(LABELS))).save(
        root / "data" / "06_models" / EMOTION_FILE, {"source": "test"})


def test_export_stage_writes_bundle_report_and_registers_the_model(project: Path) -> None:
    _inputs(project)
    done = kedro_run(project, "--pipelines", "export", "--env", "test")
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads((project / "data" / "08_reporting" / "export.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert report["bits_per_weight_ternary"] <= 2.5  # n_embd 64: one fp32 scale per 64 codes
    assert report["parity_max_rel_error_exact"] <= 0.05
    assert report["parity_max_rel_error_nbits"] <= 0.1
    assert report["variants"]["exact"]["greedy_identical"] == 1.0
    assert report["provider"] == "CPUExecutionProvider"
    assert report["source_run_id"] == "selfplay-run-1"
    bundle = project / "data" / "06_models" / "bundle"
    manifest = json.loads((bundle / "bitzero.json").read_text())
    assert report["model_bytes"] == (bundle / "nbits" / "model.onnx").stat().st_size
    assert manifest["config"]["n_embd"] == 64 and manifest["source"]["mlflow_run_id"] == "selfplay-run-1"

    # The emotion classifier travels in the bundle, listed with its checksum.
    assert manifest["extras"][EMOTION_FILE]["file"] == EMOTION_FILE
    assert EmotionClassifier.load(bundle / EMOTION_FILE).labels == LABELS

    runtime = BundleRuntime.load(bundle)
    chunks = list(runtime.stream(runtime.tokenizer.encode_chat(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True), max_tokens=4))
    assert chunks[-1].finish_reason in ("stop", "length")

    client = mlflow.tracking.MlflowClient()
    (version,) = client.search_model_versions("name = 'bitzero'")
    assert report["registered_model"]["version"] == int(version.version) == 1
    artifacts = {f.path for f in client.list_logged_model_artifacts(report["registered_model"]["logged_model_id"])}
    assert {"bitzero.json", "tokenizer.json", "nbits", "exact", EMOTION_FILE} <= artifacts
    (run,) = client.search_runs([client.get_experiment_by_name("bitzero").experiment_id])
    assert run.data.metrics["export.parity_max_rel_error_exact"] == report["parity_max_rel_error_exact"]


def test_export_stage_without_a_checkpoint_stops_with_a_clear_message(project: Path) -> None:
    done = kedro_run(project, "--pipelines", "export", "--env", "test")
    assert done.returncode != 0
    assert "selfplay_student does not exist; run the selfplay stage first" in done.stdout + done.stderr
