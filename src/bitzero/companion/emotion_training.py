"""Training the emotion classifier on GoEmotions (CC BY 4.0) over frozen MiniLM embeddings.

Label mapping, GoEmotions' 27 -> Plutchik's 8 (+ neutral). It refines GoEmotions' own Ekman
grouping (ekman_mapping.json) by splitting its broad "joy" group three ways:
  joy          joy, amusement, excitement, love, pride, relief, gratitude
  trust        admiration, approval, caring
  anticipation optimism, desire
  surprise     surprise, realization, confusion, curiosity
  sadness      sadness, disappointment, embarrassment, grief, remorse
  anger        anger, annoyance, disapproval
  fear         fear, nervousness
  disgust      disgust
For evaluation against the Ekman six + neutral, trust and anticipation fold back into joy, so the
score is comparable to the published Ekman-level figures and to the keyword baseline.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bitzero.companion.embeddings import Embedder
from bitzero.companion.emotion import LABELS, EmotionClassifier, keyword_emotion

PLUTCHIK = {
    "joy": ["joy", "amusement", "excitement", "love", "pride", "relief", "gratitude"],
    "trust": ["admiration", "approval", "caring"],
    "anticipation": ["optimism", "desire"],
    "surprise": ["surprise", "realization", "confusion", "curiosity"],
    "sadness": ["sadness", "disappointment", "embarrassment", "grief", "remorse"],
    "anger": ["anger", "annoyance", "disapproval"],
    "fear": ["fear", "nervousness"],
    "disgust": ["disgust"],
    "neutral": ["neutral"],
}
TO_EKMAN = {"trust": "joy", "anticipation": "joy"}
EKMAN_LABELS = ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral")


def read_split(folder: Path, split: str) -> tuple[list[str], list[str]]:
    """Texts and their Plutchik label, for rows with exactly one GoEmotions label."""
    names = (folder / "emotions.txt").read_text(encoding="utf-8").split()
    to_label = {g: label for label, group in PLUTCHIK.items() for g in group}
    texts, labels = [], []
    with (folder / f"{split}.tsv").open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            ids = row[1].split(",")
            if len(ids) == 1:
                texts.append(row[0])
                labels.append(to_label[names[int(ids[0])]])
    return texts, labels


def check_mapping(folder: Path) -> None:
    """The Plutchik mapping must agree with GoEmotions' own Ekman grouping once folded back."""
    ekman = json.loads((folder / "ekman_mapping.json").read_text(encoding="utf-8"))
    ours = {g: TO_EKMAN.get(label, label) for label, group in PLUTCHIK.items() for g in group}
    theirs = {g: label for label, group in ekman.items() for g in group} | {"neutral": "neutral"}
    if ours != theirs:
        raise ValueError(f"Plutchik mapping disagrees with ekman_mapping.json: {set(ours.items()) ^ set(theirs.items())}")


def macro_f1(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> float:
    scores = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted, strict=True))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def ekman_f1(gold: Sequence[str], predicted: Sequence[str]) -> float:
    fold = lambda labels: [TO_EKMAN.get(x, x) for x in labels]  # noqa: E731
    return macro_f1(fold(gold), fold(predicted), EKMAN_LABELS)


def fit_softmax(
    x: np.ndarray, y: np.ndarray, classes: int, *, steps: int = 600, lr: float = 0.05, l2: float = 1e-4,
    balance: float = 0.5, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by full-batch Adam; class weights (1/frequency)**balance."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.01, (x.shape[1], classes))
    b = np.zeros(classes)
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    class_weight = (counts.sum() / np.maximum(counts, 1) / classes) ** balance
    sample_weight = class_weight[y] / class_weight[y].sum()
    onehot = np.eye(classes)[y]
    m = [np.zeros_like(w), np.zeros_like(b)]
    v = [np.zeros_like(w), np.zeros_like(b)]
    for step in range(1, steps + 1):
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        grad_logits = (p - onehot) * sample_weight[:, None]
        grads = [x.T @ grad_logits + l2 * w, grad_logits.sum(axis=0)]
        for i, (param, grad) in enumerate(zip((w, b), grads, strict=True)):
            m[i] = 0.9 * m[i] + 0.1 * grad
            v[i] = 0.999 * v[i] + 0.001 * grad**2
            param -= lr * (m[i] / (1 - 0.9**step)) / (np.sqrt(v[i] / (1 - 0.999**step)) + 1e-8)
    return w, b


def train_from_goemotions(
    folder: Path, embedder: Embedder, out: Path, *, limit: int | None = None, cache: Path | None = None
) -> dict:
    """Train, evaluate on dev (Ekman six + neutral, macro-F1) against the keyword baseline, save."""
    check_mapping(folder)
    train_texts, train_labels = read_split(folder, "train")
    dev_texts, dev_labels = read_split(folder, "dev")
    if limit:
        train_texts, train_labels = train_texts[:limit], train_labels[:limit]
    x_train, x_dev = _embed(embedder, train_texts, cache, "train"), _embed(embedder, dev_texts, cache, "dev")
    index = {label: i for i, label in enumerate(LABELS)}
    w, b = fit_softmax(x_train, np.array([index[label] for label in train_labels]), len(LABELS))
    classifier = EmotionClassifier(w, b)
    predicted = classifier.predict(x_dev)
    report = {
        "train_rows": len(train_texts), "dev_rows": len(dev_texts),
        "dev_macro_f1_ekman": round(ekman_f1(dev_labels, predicted), 4),
        "dev_macro_f1_plutchik": round(macro_f1(dev_labels, predicted, LABELS), 4),
        "keyword_baseline_dev_macro_f1_ekman": round(ekman_f1(dev_labels, [keyword_emotion(t) for t in dev_texts]), 4),
        "mapping": PLUTCHIK, "data": "GoEmotions (Demszky et al., 2020), CC BY 4.0",
    }
    classifier.save(out, report)
    return report


def _embed(embedder: Embedder, texts: list[str], cache: Path | None, name: str) -> np.ndarray:
    """Embeddings, reused from ``cache`` when it holds the same texts (embedding is the slow part)."""
    if cache is not None:
        path = cache / f"goemotions-{name}.npy"
        key = cache / f"goemotions-{name}.count"
        if path.is_file() and key.is_file() and key.read_text() == str(len(texts)):
            return np.load(path)
    vectors = embedder.encode(texts)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
        key.write_text(str(len(texts)))
    return vectors
