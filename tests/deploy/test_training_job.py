"""The PyTorchJob's own scripts, run here as the operator runs them on two CPU nodes (gloo): the
master's init container runs the data stages, then the master's and the worker's `pytorch`
containers (distillation, then self-play, both under torchrun) run concurrently with the
environment the operator injects (PET_NNODES=2, PET_NODE_RANK 0 and 1, MASTER_ADDR/MASTER_PORT),
sharing one data folder as the pods share their volume. The job ends with a registered model
version, which is what the service's init container fetches."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest

from bitzero.model import load_checkpoint
from bitzero.serving.champion import champion_bundle
from tests.deploy.manifests import REPO, Doc, container_env, find, pod_templates
from tests.net import free_port
from tests.pipelines.conftest import project  # noqa: F401 - the throwaway project fixture

pytestmark = pytest.mark.timeout(1500)


def _local_env(pod_env: dict[str, str], **overrides: str) -> dict[str, str]:
    """The pod's environment on this machine: the local tracking store instead of the MLflow Service."""
    inherited = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**inherited, **pod_env, "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
            "MLFLOW_ARTIFACT_LOCATION": os.environ["MLFLOW_ARTIFACT_LOCATION"], "OMP_NUM_THREADS": "1", **overrides}


def test_pytorchjob_runs_on_two_cpu_nodes(project: Path, rendered: dict[str, list[Doc]]) -> None:  # noqa: F811 - the fixture, imported above
    docs = rendered["dev"]
    pods = {p.owner: p for p in pod_templates(docs)}
    master, worker = pods["PyTorchJob/bitzero-train/Master"], pods["PyTorchJob/bitzero-train/Worker"]
    assert container_env(master.containers()[0], master, docs)["KEDRO_ENV"] == "test", "dev runs the micro profile"

    # The data volume mounted over data/ hides the image's seed; the image keeps a copy elsewhere.
    image_raw = project.parent / "image-raw"
    image_raw.mkdir()
    (project / "data" / "01_raw" / "seed.jsonl").rename(image_raw / "seed.jsonl")
    shutil.copytree(REPO / "deploy" / "docker", project / "deploy" / "docker")
    init = master.spec["initContainers"][0]
    done = subprocess.run(init["command"], cwd=project,
                          env=_local_env(container_env(init, master, docs), BITZERO_RAW_DATA=str(image_raw)),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    port = str(free_port())
    nproc = find(docs, "PyTorchJob", "bitzero-train")["spec"]["nprocPerNode"]  # as the operator sets it
    assert nproc == "1", "dev: one CPU process a pod"
    nodes = []
    for rank, pod in enumerate((master, worker)):
        container = pod.containers(init=False)[0]
        env = _local_env(container_env(container, pod, docs), PET_NNODES="2", PET_NPROC_PER_NODE=nproc,
                         PET_NODE_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        log = project / f"node{rank}.log"
        with log.open("w") as out:
            nodes.append((subprocess.Popen(container["command"], cwd=project, env=env, stdout=out,
                                           stderr=subprocess.STDOUT), log))
    for process, log in nodes:
        try:
            code = process.wait(timeout=1200)
        finally:
            if process.poll() is None:
                process.kill()
        assert code == 0, log.read_text()[-4000:]

    models = project / "data" / "06_models"
    assert load_checkpoint(models / "student").config.quantized
    served = json.loads((project / "data" / "08_reporting" / "lineage.json").read_text())["served"]
    assert load_checkpoint(models / "selfplay_model").config.quantized == (served == "student")
    champion = champion_bundle(models / "bundles")
    assert (champion / "bitzero.json").is_file()
    assert (champion / "emotion.json").is_file(), "the emotion classifier travels in the bundle"
    report = json.loads((project / "data" / "08_reporting" / "selfplay.json").read_text())
    assert report["world_size"] == 2, "self-play ran on both nodes"
    client = mlflow.tracking.MlflowClient()
    versions = client.search_model_versions("name = 'bitzero'")
    assert sorted(v.tags["kind"] for v in versions) == ["student", "teacher"], "both bundles registered"
    runs = client.search_runs([client.get_experiment_by_name("bitzero").experiment_id])
    names = sorted(run.info.run_name for run in runs)
    assert names == ["augmentation", "distillation", "emotion", "export", "personalize", "selfplay", "teacher",
                     "vocabulary"], \
        "one run a stage"
