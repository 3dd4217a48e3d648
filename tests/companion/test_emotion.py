"""Emotion: the classifier file, the detector's reading and opening, the GoEmotions mapping and training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bitzero.companion.emotion import (
    LABELS,
    EmotionClassifier,
    EmotionDetector,
    EmotionModelError,
    context_note,
    keyword_emotion,
    opening,
)
from bitzero.companion.emotion_training import check_mapping, ekman_f1, fit_softmax, macro_f1, read_split

GOEMOTIONS = Path(__file__).resolve().parents[3] / "shared" / "data" / "goemotions"


def test_keyword_baseline_is_the_roadmaps_matcher() -> None:
    assert keyword_emotion("I am so happy today") == "joy"
    assert keyword_emotion("I'm scared and nervous") == "fear"
    assert keyword_emotion("The meeting is at noon") == "neutral"


def test_softmax_fit_separates_classes_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(LABELS), 16))
    y = rng.integers(0, len(LABELS), 900)
    x = centres[y] + 0.3 * rng.normal(size=(900, 16))
    w, b = fit_softmax(x, y, len(LABELS), steps=300)
    classifier = EmotionClassifier(w, b)
    predicted = classifier.predict(x)
    assert macro_f1([LABELS[i] for i in y], predicted, LABELS) > 0.95
    path = classifier.save(tmp_path / "emotion.json", {"note": "test"})
    loaded = EmotionClassifier.load(path)
    assert np.allclose(loaded.probabilities(x[:5]), classifier.probabilities(x[:5]), atol=1e-6)
    with pytest.raises(EmotionModelError, match="bitzero emotion train"):
        EmotionClassifier.load(tmp_path / "missing.json")
    with pytest.raises(EmotionModelError, match="labels"):
        EmotionClassifier(np.zeros((16, 3)), np.zeros(3))


def test_detector_reads_category_from_classifier_and_intensity_from_vader() -> None:
    # A classifier whose first embedding coordinate votes for sadness: the detector must follow it.
    weights = np.zeros((4, len(LABELS)))
    weights[0, LABELS.index("sadness")] = 10.0
    detector = EmotionDetector(EmotionClassifier(weights, np.zeros(len(LABELS))))
    sad = detector.read("I lost my job today and I feel awful and hopeless.", np.array([1.0, 0, 0, 0]))
    assert sad.emotion == "sadness" and sad.intensity == "strong" and sad.sentiment < -0.5
    assert opening(sad) and "sorry" in opening(sad) and "sadness" in context_note(sad)
    flat = detector.read("The bus comes at nine.", np.array([0.0, 0, 0, 0]))
    assert flat.emotion == "neutral" and opening(flat) is None and context_note(flat) is None


@pytest.mark.skipif(not GOEMOTIONS.is_dir(), reason="GoEmotions not present in ../shared/data")
def test_goemotions_mapping_agrees_with_ekman_and_macro_f1() -> None:
    check_mapping(GOEMOTIONS)
    texts, labels = read_split(GOEMOTIONS, "dev")
    assert len(texts) > 4000 and set(labels) == set(LABELS)
    assert ekman_f1(labels, labels) == 1.0
    assert ekman_f1(["trust", "joy"], ["joy", "anticipation"]) == pytest.approx(1 / 7 * 1.0 * 1)  # only joy present
    baseline = ekman_f1(labels, [keyword_emotion(t) for t in texts])
    assert 0.15 < baseline < 0.3  # the issue measured 0.21 for the roadmap's matcher
