"""The training image, built from this repository with the CPU torch wheel, runs a pipeline stage on the
micro profile as the cluster's pods run it: as its non-root user, in /app, tracking to MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy.podman import LIMITS, Figures, image_size_mb, podman
from tests.tiny import tiny_hf_checkpoint

pytestmark = pytest.mark.timeout(2400)
# Kedro's log to stderr: stdout carries the user id and the stage's report only.
STAGE = "kedro run --pipelines teacher --env test >&2 && id -u && cat data/08_reporting/teacher.json"


def test_teacher_stage_runs_in_the_training_image(train_image: str, tmp_path: Path, figures: Figures) -> None:
    teacher = tiny_hf_checkpoint(tmp_path / "tiny-teacher")  # conf/test's teacher source
    for path in [tmp_path, teacher, *teacher.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # the image's user reads the mounted folder
    done = podman("run", "--rm", *LIMITS, "--env", "OMP_NUM_THREADS=1",
                  "--volume", f"{teacher}:/app/tiny-teacher:ro", train_image, "sh", "-c", STAGE)
    uid, report = done.stdout.split("\n", 1)
    assert uid == "10001"
    assert json.loads(report), done.stdout
    torch = podman("run", "--rm", *LIMITS, train_image, "python", "-c", "import torch; print(torch.__version__)")
    assert torch.stdout.strip() == "2.13.0+cpu", "the wheelhouse's CPU build, not PyPI's CUDA one"
    figures("training image", {"size MB": round(image_size_mb(train_image))})
