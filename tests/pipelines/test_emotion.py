"""The emotion stage as a user runs it: on the seed's emotional records when GoEmotions is not
there, on GoEmotions when it is; either way the classifier beats the keyword baseline on rows it
did not train on, and the service's sentence embedder is in place."""

import json
import shutil
from pathlib import Path

import mlflow
import pytest

from bitzero.companion.embeddings import ensure_embedder
from bitzero.companion.emotion import LABELS, EmotionClassifier
from tests.pipelines.conftest import RAW_DATA, kedro_run
from tests.service.conftest import EMBEDDER_CACHE

pytestmark = pytest.mark.timeout(600)


def _inputs(root: Path) -> None:
    """The vocabulary stage's records (the seed passes validation as it is) and the embedder, converted
    once per machine for the tests (the stage converts it itself when missing)."""
    primary = root / "data" / "03_primary"
    primary.mkdir(parents=True)
    shutil.copy2(root / "data" / "01_raw" / "seed.jsonl", primary / "records.jsonl")
    ensure_embedder(EMBEDDER_CACHE)
    shutil.copytree(EMBEDDER_CACHE, root / "data" / "06_models" / "embedder")


def _report(root: Path) -> dict:
    return json.loads((root / "data" / "08_reporting" / "emotion.json").read_text())


def test_emotion_stage_trains_on_the_seed_records_without_goemotions(project: Path) -> None:
    _inputs(project)
    done = kedro_run(project, "--pipelines", "emotion", "--env", "test")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = _report(project)
    assert report["source"] == "records" and report["dev_rows"] > 100
    assert report["dev_macro_f1_plutchik"] > report["keyword_baseline_dev_macro_f1_plutchik"] + 0.1
    classifier = EmotionClassifier.load(project / "data" / "06_models" / "emotion" / "emotion.json")
    assert classifier.labels == LABELS
    (run,) = mlflow.tracking.MlflowClient().search_runs(
        [mlflow.tracking.MlflowClient().get_experiment_by_name("bitzero").experiment_id])
    assert run.data.metrics["emotion.dev_macro_f1_plutchik"] == report["dev_macro_f1_plutchik"]


def test_emotion_stage_trains_on_goemotions_when_it_is_there(project: Path) -> None:
    _inputs(project)
    done = kedro_run(project, "--pipelines", "emotion", "--env", "test",
                     "--params", f"emotion.goemotions_dir={RAW_DATA / 'goemotions'},emotion.max_rows=1500")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = _report(project)
    assert (report["source"], report["train_rows"], report["dev_rows"]) == ("goemotions", 1500, 300)
    assert report["finetune_rows"] == 64, "the micro profile fine-tunes MiniLM on 64 rows"
    assert report["dev_macro_f1_ekman"] > report["keyword_baseline_dev_macro_f1_ekman"]
    assert sum(map(sum, (row.values() for row in report["confusion_ekman"].values()))) == 300
    classifier = EmotionClassifier.load(project / "data" / "06_models" / "emotion" / "emotion.json")
    assert classifier.encoder is not None and classifier.embedding_dims == 0
