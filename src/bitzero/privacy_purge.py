"""After an erasure: clean the copies the pipeline does not rewrite (DVC cache, MLflow runs).

`dvc repro` rebuilds every stage output without the ledgered records, but older versions of those
outputs stay in the DVC cache, and every MLflow run of a stage downstream of the raw data that
started before the latest erasure holds artifacts built from them (quarantine, tokenizer, splits,
checkpoints, bundles). This removes both. Registered model versions are listed, never deleted:
weights already trained on erased data cannot be un-trained, only retrained and retired.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run, ViewType

from bitzero.errors import BitZeroError

# Stages whose runs read the raw data, directly or through another stage (the teacher does not).
DOWNSTREAM_STAGES = frozenset(
    {"vocabulary", "augmentation", "distillation", "selfplay", "personalize", "emotion", "export", "__default__"}
)
DEFAULT_TRACKING_URI = "sqlite:///mlflow/mlflow.db"  # conf/base/mlflow.yml's default
RECORDS = Path("data/03_primary/records.jsonl")  # the vocabulary stage's output, which applies the ledger


class PurgeError(BitZeroError):
    """A clean-up step failed; its message says which and why."""


@dataclass(frozen=True)
class StaleRun:
    run_id: str
    name: str
    started: datetime


@dataclass(frozen=True)
class TrainedVersion:
    model: str
    version: str
    run_id: str


@dataclass
class PurgeReport:
    erased_at: datetime | None
    outputs_stale: bool = False
    dvc: str = ""
    mlflow: str = ""
    runs: list[StaleRun] = field(default_factory=list)
    versions: list[TrainedVersion] = field(default_factory=list)


def tracking_uri() -> str:
    """The store the pipeline logs to: MLFLOW_TRACKING_URI, else the project's local SQLite file."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def experiment_name(name: str | None) -> str:
    """The experiment the pipeline logs to (conf/base/mlflow.yml): the name given, else the same env var."""
    return name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "bitzero"


def _is_downstream(run_name: str) -> bool:
    """A run is named after its pipelines (``vocabulary+augmentation`` when several ran at once)."""
    return any(part in DOWNSTREAM_STAGES for part in run_name.split("+"))


def stale_runs(client: MlflowClient, experiment: str, before: datetime) -> list[StaleRun]:
    """Runs of downstream stages that started before ``before``: their inputs held erased data."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    before_ms = int(before.timestamp() * 1000)
    runs: list[Run] = client.search_runs(
        [found.experiment_id], filter_string=f"attributes.start_time < {before_ms}",
        run_view_type=ViewType.ACTIVE_ONLY, max_results=50_000, order_by=["attributes.start_time ASC"],
    )
    return [
        StaleRun(r.info.run_id, r.info.run_name or "", datetime.fromtimestamp(r.info.start_time / 1000).astimezone())
        for r in runs
        if _is_downstream(r.info.run_name or "")
    ]


def trained_versions(client: MlflowClient, run_ids: set[str]) -> list[TrainedVersion]:
    """Registered model versions made by these runs: listed for a person to retire, never deleted here."""
    return [
        TrainedVersion(v.name, str(v.version), v.run_id)
        for v in client.search_model_versions()
        if v.run_id in run_ids
    ]


def delete_runs(client: MlflowClient, uri: str, run_ids: list[str]) -> str:
    """Mark the runs deleted, then `mlflow gc` them from the backend store with their artifacts
    (in a child process: the command sets the tracking URI process-wide); returns what a person
    must know about it."""
    for run_id in run_ids:
        client.delete_run(run_id)
    if uri.startswith(("http://", "https://", "databricks")):
        return (f"runs marked deleted on {uri}; run `mlflow gc` against the server's backend store "
                "to remove them and their artifacts for good")
    command = [sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", uri, "--run-ids", ",".join(run_ids)]
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    if done.returncode != 0:
        raise PurgeError(f"`mlflow gc` failed (the runs stay marked deleted): {done.stderr.strip()[-2000:]}")
    return "runs and their artifacts removed for good (mlflow gc also collected anything already marked deleted)"


def _dvc_executable() -> str | None:
    """dvc from this environment (the venv may not be on PATH), else from PATH."""
    beside = Path(sys.executable).parent / "dvc"
    return str(beside) if beside.is_file() else shutil.which("dvc")


def dvc_gc(project: Path, dry_run: bool) -> str:
    """`dvc gc --workspace`: drop every cache entry the current outputs do not use (the old outputs
    built from erased data among them). Says why when there is nothing it can do."""
    if not (project / ".dvc").is_dir():
        return f"dvc gc skipped: {project} is not a DVC repository (no .dvc/), so there is no DVC cache to clean"
    dvc = _dvc_executable()
    if dvc is None:
        return "dvc gc skipped: dvc is not installed; delete .dvc/cache by hand, then `dvc repro` rebuilds it"
    command = [dvc, "gc", "--workspace", "--dry" if dry_run else "--force"]
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PurgeError(f"`{' '.join(command[1:])}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return f"`dvc {' '.join(command[1:])}`:\n{done.stdout.strip() or '(nothing to remove)'}"


def purge(ledger: Path, project: Path, experiment: str | None, dry_run: bool) -> PurgeReport:
    """Everything built before the latest erasure that the pipeline's next run does not rewrite."""
    from bitzero.data.erasure import latest_erasure

    report = PurgeReport(latest_erasure(ledger))
    if report.erased_at is None:
        return report
    records = project / RECORDS
    report.outputs_stale = records.is_file() and records.stat().st_mtime < report.erased_at.timestamp()
    report.dvc = dvc_gc(project, dry_run)
    uri = tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    report.runs = stale_runs(client, experiment_name(experiment), report.erased_at)
    report.versions = trained_versions(client, {r.run_id for r in report.runs})
    if report.runs and not dry_run:
        report.mlflow = delete_runs(client, uri, [r.run_id for r in report.runs])
    return report


def describe(report: PurgeReport, ledger: Path, dry_run: bool) -> list[str]:
    """The report as lines for a person: what went (or would go), and what cannot be undone."""
    if report.erased_at is None:
        return [f"no erasure recorded in {ledger}: nothing to purge"]
    verb = "would delete" if dry_run else "deleted"
    lines = [f"latest erasure: {report.erased_at.isoformat()}"]
    if report.outputs_stale:
        lines.append(f"warning: {RECORDS} predates it: run `dvc repro` first, else dvc gc keeps the current "
                     "outputs, which were built from erased data")
    lines += [report.dvc,
             f"MLflow: {verb} {len(report.runs)} run(s) of downstream stages started before it"]
    lines += [f"  {r.run_id}  {r.name}  started {r.started:%Y-%m-%d %H:%M:%S}" for r in report.runs]
    if report.mlflow:
        lines.append(f"  {report.mlflow}")
    if report.versions:
        lines.append(f"{len(report.versions)} registered model version(s) were built from those runs (kept):")
        lines += [f"  {v.model} version {v.version}  (run {v.run_id})" for v in report.versions]
        lines.append("Weights already trained on erased data cannot be un-trained: retrain from the cleaned "
                     "data (`dvc repro`), promote the new version, then retire these "
                     "(MlflowClient().delete_model_version).")
    return lines
