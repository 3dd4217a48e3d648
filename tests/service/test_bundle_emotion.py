"""The emotion classifier that travels in the champion's bundle is used only as the bundle's manifest lists it."""

from pathlib import Path

import numpy as np
import pytest

from bitzero.companion.emotion import EMOTION_FILE, LABELS, EmotionClassifier
from bitzero.service.app import _load_detector
from bitzero.service.settings import Settings
from bitzero.serving.bundle import BundleError, file_entry, write_manifest


def _bundle(root: Path, listed: bool) -> Path:
    bundle = root / "bundle"
    bundle.mkdir()
    EmotionClassifier(np.zeros((384, len(LABELS))), np.zeros(len(LABELS))).save(bundle / EMOTION_FILE, {})
    extras = {EMOTION_FILE: file_entry(bundle, EMOTION_FILE)} if listed else {}
    write_manifest(bundle, {"model_id": "m", "config": {}, "tokenizer": {}, "variants": {}, "stop_token_ids": [],
                            "extras": extras})
    return bundle


def test_a_listed_classifier_loads_and_a_tampered_one_stops_the_start(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, listed=True)
    settings = Settings(bundles=tmp_path, database_url=f"sqlite:///{tmp_path}/c.db")
    assert settings.emotion_path(bundle) == bundle / EMOTION_FILE
    assert _load_detector(settings, bundle) is not None
    path = bundle / EMOTION_FILE
    path.write_text(path.read_text().replace('"labels"', '"labels" ', 1))
    with pytest.raises(BundleError, match="corrupt"):
        _load_detector(settings, bundle)


def test_an_unlisted_classifier_in_the_bundle_is_refused(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, listed=False)
    settings = Settings(bundles=bundle, database_url=f"sqlite:///{tmp_path}/c.db")
    with pytest.raises(BundleError, match="not listed"):
        _load_detector(settings, bundle)
