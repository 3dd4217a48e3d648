"""The real MiniLM embedder, converted to ONNX once and cached between runs."""

import tempfile
from pathlib import Path

import pytest

from bitzero.companion.embeddings import OnnxEmbedder, ensure_embedder


@pytest.fixture(scope="session")
def embedder() -> OnnxEmbedder:
    return ensure_embedder(Path(tempfile.gettempdir()) / "bitzero-test-embedder-minilm-v1")
