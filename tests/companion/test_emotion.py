"""Emotion: the classifier file, the detector's reading and opening, the GoEmotions mapping and training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bitzero.companion.emotion import (
    ENCODER_FILE,
    LABELS,
    EmotionClassifier,
    EmotionDetector,
    EmotionModelError,
    Reading,
    context_note,
    emotion_files,
    keyword_emotion,
)
from bitzero.companion.emotion_finetune import FinetuneSettings, finetune_encoder
from bitzero.companion.emotion_training import check_mapping, ekman_f1, fit_classifier, read_split
from tests.tiny import tiny_emotion_encoder

GOEMOTIONS = Path(__file__).resolve().parents[2] / "data" / "01_raw" / "goemotions"


def test_keyword_baseline_is_the_roadmaps_matcher() -> None:
    assert keyword_emotion("I am so happy today") == "joy"
    assert keyword_emotion("I'm scared and nervous") == "fear"
    assert keyword_emotion("The meeting is at noon") == "neutral"


def test_classifier_learns_words_and_embeddings_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cues = {"joy": "wonderful", "sadness": "miserable", "anger": "furious", "neutral": "tuesday"}
    texts, labels = [], []
    for i in range(400):
        label = list(cues)[i % 4]
        texts.append(f"it was {cues[label]} {rng.choice(['today', 'again', 'honestly'])} number {i % 7}")
        labels.append(label)
    vectors = rng.normal(size=(400, 8)).astype(np.float32)  # uninformative: the words must carry it
    classifier = fit_classifier(texts, labels, vectors, max_features=200)
    assert "wonderful" in classifier.vocabulary and "it was" in classifier.vocabulary
    assert classifier.predict(vectors[:4], ["so wonderful", "miserable day", "furious!", "on tuesday"]) == [
        "joy", "sadness", "anger", "neutral"]
    path = classifier.save(tmp_path / "emotion.json", {"note": "test"})
    loaded = EmotionClassifier.load(path)
    assert np.allclose(loaded.probabilities(vectors[:5], texts[:5]), classifier.probabilities(vectors[:5], texts[:5]),
                       atol=1e-4)
    with pytest.raises(EmotionModelError, match="reads the text"):
        loaded.probabilities(vectors[:1])
    with pytest.raises(EmotionModelError, match="bitzero emotion train"):
        EmotionClassifier.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(EmotionModelError, match="not a BitZero emotion classifier"):
        EmotionClassifier.load(tmp_path / "bad.json")
    with pytest.raises(EmotionModelError, match="labels"):
        EmotionClassifier(np.zeros((16, 3)), np.zeros(3))


def _cue_rows(count: int, offset: int = 0) -> tuple[list[str], list[str]]:
    cues = {"joy": "wonderful", "sadness": "miserable", "anger": "furious", "neutral": "tuesday"}
    rows = [(f"it was {cues[label]} {['today', 'again', 'honestly'][i % 3]} number {i}", label)
            for i in range(offset, offset + count) for label in [list(cues)[i % 4]]]
    return [t for t, _ in rows], [label for _, label in rows]


def test_encoder_is_averaged_in_and_travels_beside_the_json(tmp_path: Path) -> None:
    texts, labels = _cue_rows(80)
    words = fit_classifier(texts, labels, np.zeros((80, 0), dtype=np.float32), max_features=50)
    encoder = tiny_emotion_encoder(LABELS)
    both = EmotionClassifier(words.weights, words.bias, LABELS, words.vocabulary, words.idf, encoder, 0.25)
    none = np.zeros((3, 0), dtype=np.float32)
    expected = 0.75 * words.probabilities(none, texts[:3]) + 0.25 * encoder.probabilities(texts[:3])
    assert np.allclose(both.probabilities(none, texts[:3]), expected, atol=1e-6)
    assert np.allclose(both.probabilities(none, texts[:3]).sum(axis=1), 1.0, atol=1e-5)

    path = both.save(tmp_path / "emotion" / "emotion.json")
    assert set(emotion_files(path)) == {"emotion.json", "emotion.onnx", "emotion-tokenizer.json"}
    loaded = EmotionClassifier.load(path)
    assert loaded.encoder_weight == 0.25
    assert np.allclose(loaded.probabilities(none, texts[:3]), expected, atol=1e-5)
    # A service reading vectors of the memory embedder's width: the word softmax ignores them.
    assert np.allclose(loaded.probabilities(np.ones((3, 384), dtype=np.float32), texts[:3]), expected, atol=1e-5)
    (path.parent / ENCODER_FILE).unlink()
    with pytest.raises(EmotionModelError, match="emotion.onnx, which is missing"):
        EmotionClassifier.load(path)


def test_finetuned_encoder_learns_cues_it_did_not_see_as_sentences() -> None:
    texts, labels = _cue_rows(160)
    encoder, run = finetune_encoder(texts, labels, LABELS, FinetuneSettings(epochs=3, learning_rate=2e-4,
                                                                            batch_size=16, max_tokens=16))
    assert run.steps == run.planned_steps == 30 and run.rows_seen == 480
    held_texts, held_labels = _cue_rows(40, offset=1000)  # other numbers: sentences never seen
    predicted = [LABELS[i] for i in encoder.probabilities(held_texts).argmax(axis=1)]
    accuracy = np.mean([p == g for p, g in zip(predicted, held_labels, strict=True)])
    assert accuracy >= 0.9, f"held-out accuracy {accuracy:.2f} (chance: 0.25)"


def test_detector_reads_category_from_classifier_and_intensity_from_vader() -> None:
    # A classifier whose first embedding coordinate votes for sadness: the detector must follow it.
    weights = np.zeros((4, len(LABELS)))
    weights[0, LABELS.index("sadness")] = 10.0
    detector = EmotionDetector(EmotionClassifier(weights, np.zeros(len(LABELS))))
    sad = detector.read("I lost my job today and I feel awful and hopeless.", np.array([1.0, 0, 0, 0]))
    assert sad.emotion == "sadness" and sad.intensity == "strong" and sad.sentiment < -0.5
    assert "sadness (strong)" in context_note(sad)
    flat = detector.read("The bus comes at nine.", np.array([0.0, 0, 0, 0]))
    assert flat.emotion == "neutral" and context_note(flat) is None
    assert "surprise (mild)" in context_note(Reading("surprise", 0.5, "mild", 0.0))


def test_good_news_spread_over_the_happy_emotions_gets_a_happy_note() -> None:
    """No emotion alone passes 0.4, but joy, trust and anticipation together do: the reading is joy,
    and its note asks the model to share the happiness, not for the empathy it asks for sadness."""
    weights = np.zeros((3, len(LABELS)))
    weights[0, [LABELS.index("joy"), LABELS.index("trust"), LABELS.index("anticipation")]] = [2.1, 2.0, 2.0]
    weights[1, [LABELS.index("joy"), LABELS.index("sadness")]] = 1.5  # both sides at once: neither leads
    weights[2, [LABELS.index("sadness"), LABELS.index("fear"), LABELS.index("anger")]] = [2.1, 2.0, 2.0]
    detector = EmotionDetector(EmotionClassifier(weights, np.zeros(len(LABELS))))
    good = detector.read("I just got the job I wanted!", np.array([1.0, 0, 0]))
    assert good.emotion == "joy" and good.confidence < detector.min_confidence
    assert "joy (mild); share their happiness" in context_note(good)
    assert detector.read("I just got the job I wanted!", np.array([0, 1.0, 0])).emotion == "neutral"
    bad = detector.read("My dog died.", np.array([0, 0, 1.0]))
    assert bad.emotion == "sadness" and "respond with empathy" in context_note(bad)
    assert EmotionDetector(detector.classifier, min_valence=0.9).read("ok", np.array([1.0, 0, 0])).emotion == "neutral"


def test_goemotions_mapping_agrees_with_ekman_and_macro_f1() -> None:
    check_mapping(GOEMOTIONS)
    texts, labels = read_split(GOEMOTIONS, "dev")
    assert len(texts) > 4000 and set(labels) == set(LABELS)
    assert ekman_f1(labels, labels) == 1.0
    assert ekman_f1(["trust", "joy"], ["joy", "anticipation"]) == pytest.approx(1 / 7 * 1.0 * 1)  # only joy present
    baseline = ekman_f1(labels, [keyword_emotion(t) for t in texts])
    assert 0.15 < baseline < 0.3  # the issue measured 0.21 for the roadmap's matcher


def test_the_time_budget_ends_the_finetune_before_its_epochs() -> None:
    """Sized by time, not by a count tuned on one CPU: a 2-second budget ends 100 epochs early, and
    the learning rate has followed the whole cycle by then."""
    texts, labels = _cue_rows(64)
    _, run = finetune_encoder(texts, labels, LABELS, FinetuneSettings(epochs=100, batch_size=16, max_tokens=16,
                                                                      seconds=2.0))
    assert 0 < run.steps < run.planned_steps == 400 and run.precision in ("float32", "bfloat16")


def test_the_learning_rate_cycle_warms_up_peaks_and_ends_at_zero() -> None:
    from bitzero.companion.emotion_finetune import one_cycle

    factors = [one_cycle(p / 100, 0.1) for p in range(101)]
    assert factors[0] > 0 and factors[10] == 1.0 and factors[100] == pytest.approx(0.0, abs=1e-12)
    assert factors[:11] == sorted(factors[:11]) and factors[10:] == sorted(factors[10:], reverse=True)
