"""`bitzero erasure purge` on a throwaway SQLite MLflow store: runs built before the latest erasure
go with their artifacts, later runs and the teacher's stay, registered versions are only listed."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from bitzero.cli import main

ERASED_AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A project folder (no .dvc/) with a ledger and runs either side of its erasure."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    ledger = tmp_path / "data" / "01_raw" / "erasures.jsonl"
    ledger.parent.mkdir(parents=True)
    entries = [(ERASED_AT - timedelta(days=3), ["feedback-1"]), (ERASED_AT, ["feedback-2"])]
    ledger.write_text("".join(json.dumps({"erased_at": t.isoformat(), "record_ids": ids}) + "\n" for t, ids in entries))

    client = MlflowClient(uri)
    experiment = client.create_experiment("bitzero", artifact_location=str(tmp_path / "artifacts"))
    before, after = ERASED_AT - timedelta(hours=1), ERASED_AT + timedelta(hours=1)
    runs = {
        name: client.create_run(experiment, start_time=_ms(moment), run_name=name.split(":")[0]).info
        for name, moment in [("vocabulary:old", before), ("export:old", before), ("teacher:old", before),
                             ("vocabulary+augmentation:old", before), ("vocabulary:new", after)]
    }
    (tmp_path / "quarantine.jsonl").write_text('{"raw": "erased words"}\n')
    client.log_artifact(runs["vocabulary:old"].run_id, str(tmp_path / "quarantine.jsonl"))
    client.create_registered_model("bitzero-student")
    model = client.create_logged_model(experiment, name="bundle", source_run_id=runs["export:old"].run_id)
    client.create_model_version("bitzero-student", f"models:/{model.model_id}", run_id=runs["export:old"].run_id)
    return {"client": client, "runs": runs, "experiment": experiment, "tmp": tmp_path}


def _active(store: dict) -> set[str]:
    found = store["client"].search_runs([store["experiment"]], run_view_type=ViewType.ALL)
    return {r.info.run_id for r in found if r.info.lifecycle_stage == "active"}


def test_purge_deletes_runs_made_before_the_erasure_and_keeps_later_ones(store: dict, capsys) -> None:
    runs = store["runs"]
    artifact = Path(runs["vocabulary:old"].artifact_uri.removeprefix("file://")) / "quarantine.jsonl"
    assert artifact.is_file()

    assert main(["erasure", "purge"]) == 0

    out = capsys.readouterr().out
    assert _active(store) == {runs["teacher:old"].run_id, runs["vocabulary:new"].run_id}
    gone = [runs[n].run_id for n in ("vocabulary:old", "export:old", "vocabulary+augmentation:old")]
    everything = {r.info.run_id for r in store["client"].search_runs([store["experiment"]], run_view_type=ViewType.ALL)}
    assert not everything & set(gone)  # gc removed them from the store, not just marked them
    assert not artifact.exists()
    assert all(run_id in out for run_id in gone)
    assert "not a DVC repository" in out
    # The registered version stays, and the report says what cannot be undone.
    assert store["client"].get_model_version("bitzero-student", "1").run_id == runs["export:old"].run_id
    assert "bitzero-student version 1" in out and "cannot be un-trained" in out


def test_dry_run_lists_and_deletes_nothing(store: dict, capsys) -> None:
    before = _active(store)
    artifact = Path(store["runs"]["vocabulary:old"].artifact_uri.removeprefix("file://")) / "quarantine.jsonl"

    assert main(["erasure", "purge", "--dry-run"]) == 0

    out = capsys.readouterr().out
    assert _active(store) == before and artifact.is_file()
    assert "would delete 3 run(s)" in out
    assert store["runs"]["export:old"].run_id in out and store["runs"]["vocabulary:new"].run_id not in out


def test_without_a_ledger_nothing_is_touched(store: dict, capsys) -> None:
    before = _active(store)
    assert main(["erasure", "purge", "--ledger", str(store["tmp"] / "none.jsonl")]) == 0
    assert "nothing to purge" in capsys.readouterr().out
    assert _active(store) == before
