"""Training the emotion classifier on GoEmotions (CC BY 4.0): a multinomial logistic regression on
words and word pairs over every training row, averaged with MiniLM fine-tuned on a share of them
(``emotion_finetune``). Without GoEmotions, the regression reads words and the frozen MiniLM
embedding of the project's own emotional records.

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

import copy
import csv
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bitzero.companion.embeddings import Embedder
from bitzero.companion.emotion import LABELS, EmotionClassifier, EmotionEncoder, keyword_emotion, text_features

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bitzero.companion.emotion_finetune import FinetuneSettings

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


def to_ekman(labels: Sequence[str]) -> list[str]:
    """Plutchik labels folded to Ekman's six + neutral (trust and anticipation into joy)."""
    return [TO_EKMAN.get(x, x) for x in labels]


def ekman_f1(gold: Sequence[str], predicted: Sequence[str]) -> float:
    return macro_f1(to_ekman(gold), to_ekman(predicted), EKMAN_LABELS)


def build_vocabulary(texts: Sequence[str], max_features: int, min_df: int = 2) -> tuple[dict[str, int], np.ndarray]:
    """The ``max_features`` most frequent words and word pairs seen in >= ``min_df`` texts, with
    smoothed idf = ln((1 + n) / (1 + df)) + 1."""
    frequency: Counter[str] = Counter()
    documents: Counter[str] = Counter()
    for text in texts:
        features = text_features(text)
        frequency.update(features)
        documents.update(set(features))
    kept = [f for f, _ in sorted(frequency.items(), key=lambda kv: (-kv[1], kv[0])) if documents[f] >= min_df]
    kept = kept[:max_features]
    idf = np.array([np.log((1 + len(texts)) / (1 + documents[f])) + 1 for f in kept], dtype=np.float32)
    return {f: i for i, f in enumerate(kept)}, idf


def fit_classifier(
    texts: Sequence[str], labels: Sequence[str], vectors: np.ndarray, *,
    max_features: int = 20_000, strength: float = 2.0, balance: float = 0.5,
) -> EmotionClassifier:
    """Multinomial logistic regression on [tf-idf | embedding] (scikit-learn's lbfgs, training only);
    class weights (1 / frequency) ** balance lift rare emotions without drowning the common ones."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.linear_model import LogisticRegression

    vocabulary, idf = build_vocabulary(texts, max_features)
    shell = EmotionClassifier(np.zeros((len(vocabulary) + vectors.shape[1], len(LABELS))), np.zeros(len(LABELS)),
                              LABELS, vocabulary, idf)
    rows, cols, values = [], [], []
    for row, text in enumerate(texts):
        indices, weights = shell.tfidf(text)
        rows.extend([row] * len(indices))
        cols.extend(indices.tolist())
        values.extend(weights.tolist())
    words = csr_matrix((values, (rows, cols)), shape=(len(texts), len(vocabulary)), dtype=np.float64)
    features = hstack([words, csr_matrix(vectors.astype(np.float64))]).tocsr()
    counts = Counter(labels)
    class_weights = {label: (len(labels) / (len(counts) * counts[label])) ** balance for label in counts}
    model = LogisticRegression(C=strength, max_iter=300, class_weight=class_weights).fit(features, list(labels))
    # A label absent from the training rows (a small --limit) gets zero weights and is never chosen.
    classes = list(model.classes_)
    coef = np.zeros((len(LABELS), features.shape[1]))
    bias = np.full(len(LABELS), model.intercept_.min() - 20.0)
    for row, label in enumerate(LABELS):
        if label in classes:
            coef[row], bias[row] = model.coef_[classes.index(label)], model.intercept_[classes.index(label)]
    return EmotionClassifier(coef.T, bias, LABELS, vocabulary, idf)


def fit_goemotions(
    folder: Path, *, limit: int | None = None, dev_limit: int | None = None, finetune_rows: int = 0,
    finetune: FinetuneSettings | None = None,
) -> tuple[EmotionClassifier, dict]:
    """Train on GoEmotions' train split, evaluate on dev (Ekman six + neutral, macro-F1) against
    the keyword baseline: the word softmax on every row, and when ``finetune_rows`` > 0 the
    fine-tuned encoder on that many of them (a seeded sample), averaged in."""
    from bitzero.companion.emotion_finetune import FinetuneSettings, finetune_encoder

    check_mapping(folder)
    train_texts, train_labels = read_split(folder, "train")
    dev_texts, dev_labels = read_split(folder, "dev")
    if limit:
        train_texts, train_labels = train_texts[:limit], train_labels[:limit]
    if dev_limit:
        dev_texts, dev_labels = dev_texts[:dev_limit], dev_labels[:dev_limit]

    def no_vectors(rows: int) -> np.ndarray:  # the word softmax reads no embedding
        return np.zeros((rows, 0), dtype=np.float32)

    classifier = fit_classifier(train_texts, train_labels, no_vectors(len(train_texts)))
    report: dict = {"source": "goemotions", "train_rows": len(train_texts), "dev_rows": len(dev_texts)}
    words = classifier.word_probabilities(no_vectors(len(dev_texts)), dev_texts)
    served = words
    if finetune_rows > 0:
        settings = finetune or FinetuneSettings()
        rows = np.random.default_rng(settings.seed).permutation(len(train_texts))[:finetune_rows]
        classifier.encoder, run = finetune_encoder([train_texts[i] for i in rows], [train_labels[i] for i in rows],
                                                   LABELS, settings)
        encoded = classifier.encoder.probabilities(dev_texts)
        served = classifier.blend(words, encoded)  # what `probabilities` returns, each part computed once
        report |= {"finetune_rows": len(rows), **run.as_report(),
                   "encoder_dev_macro_f1_ekman": round(ekman_f1(dev_labels, _labels(encoded)), 4),
                   "words_dev_macro_f1_ekman": round(ekman_f1(dev_labels, _labels(words)), 4),
                   "ms_per_message_1_thread": _latency(classifier, dev_texts[:200])}
    predicted = _labels(served)
    report |= {**scores(dev_labels, predicted, dev_texts), "confusion_ekman": confusion(dev_labels, predicted),
               "mapping": PLUTCHIK, "data": "GoEmotions (Demszky et al., 2020), CC BY 4.0"}
    return classifier, report


def _labels(probabilities: np.ndarray) -> list[str]:
    return [LABELS[i] for i in probabilities.argmax(axis=1)]


def _latency(classifier: EmotionClassifier, texts: Sequence[str]) -> dict[str, float]:
    """Milliseconds to read one message on one thread, as the service does (median and p95)."""
    single = copy.copy(classifier)
    if classifier.encoder is not None:
        single.encoder = EmotionEncoder(classifier.encoder.model, classifier.encoder.tokenizer, LABELS, threads=1)
    times = []
    for text in texts:
        start = time.perf_counter()
        single.probabilities(np.zeros((1, 0), dtype=np.float32), [text])
        times.append(1000 * (time.perf_counter() - start))
    return {"median": round(float(np.median(times)), 2), "p95": round(float(np.percentile(times, 95)), 2)}


def confusion(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, dict[str, int]]:
    """Ekman-level confusion counts: {gold label: {predicted label: rows}}."""
    table = {g: dict.fromkeys(EKMAN_LABELS, 0) for g in EKMAN_LABELS}
    for g, p in zip(to_ekman(gold), to_ekman(predicted), strict=True):
        table[g][p] += 1
    return table


def confusion_figure(table: dict[str, dict[str, int]], title: str) -> Figure:
    """The confusion counts as a heat map, each row shaded by its share (recall on the diagonal)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    labels = list(table)
    counts = np.array([[table[g][p] for p in labels] for g in labels], dtype=float)
    shares = counts / np.clip(counts.sum(axis=1, keepdims=True), 1, None)
    figure, axes = plt.subplots(figsize=(6.4, 5.4))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, col), count in np.ndenumerate(counts):
        axes.text(col, row, f"{int(count)}", ha="center", va="center", fontsize=8,
                  color="white" if shares[row, col] > 0.5 else "black")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="share of the gold row")
    figure.tight_layout()
    return figure


def records_dataset(records: Sequence[dict]) -> tuple[list[str], list[str]]:
    """Texts and labels from the project's own training records, for when GoEmotions is not at
    hand: the first user turn of each emotional record with its emotion, and of as many
    conversation records (everyday chat: weak "neutral" labels) as an average emotion has, so the
    classifier can also say that nothing in particular is felt."""
    def first_user_turn(record: dict) -> str | None:
        return next((t["content"] for t in record.get("conversation", []) if t.get("role") == "user"), None)

    texts, labels = [], []
    for record in records:
        if record.get("type") == "emotional" and record.get("emotion") in LABELS and (text := first_user_turn(record)):
            texts.append(text)
            labels.append(record["emotion"])
    per_emotion = len(texts) // max(1, len(set(labels)))
    chat = [text for r in records if r.get("type") == "conversation" and (text := first_user_turn(r))]
    texts += chat[:per_emotion]
    labels += ["neutral"] * len(chat[:per_emotion])
    # One row per distinct text (the first label wins): a sentence on both sides of the held-out
    # split would score memory, not recognition.
    unique: dict[str, str] = {}
    for text, label in zip(texts, labels, strict=True):
        unique.setdefault(text, label)
    return list(unique), list(unique.values())


def fit_records(records: Sequence[dict], embedder: Embedder, *, holdout: float = 0.2, seed: int = 0) -> tuple[EmotionClassifier, dict]:
    """Train on the records' labelled user turns (see `records_dataset`); evaluate on a held-out
    share of them against the keyword baseline."""
    texts, labels = records_dataset(records)
    if len(set(labels)) < 2:
        raise ValueError("the records hold fewer than two emotion labels: nothing to train an emotion classifier on")
    order = np.random.default_rng(seed).permutation(len(texts))
    cut = int(len(order) * holdout)
    dev, train = order[:cut], order[cut:]

    def pick(items: list[str], idx: np.ndarray) -> list[str]:
        return [items[i] for i in idx]

    vectors = embedder.encode(texts)
    classifier = fit_classifier(pick(texts, train), pick(labels, train), vectors[train])
    dev_texts, dev_labels = pick(texts, dev), pick(labels, dev)
    predicted = classifier.predict(vectors[dev], dev_texts)
    report = {"source": "records", "train_rows": len(train), "dev_rows": len(dev),
              **scores(dev_labels, predicted, dev_texts), "confusion_ekman": confusion(dev_labels, predicted),
              "data": "the emotional records of the training data (neutral: conversation records)",
              "note": "held-out rows share the records' sentence templates: the score overstates real-world quality"}
    return classifier, report


def scores(gold: Sequence[str], predicted: Sequence[str], texts: Sequence[str]) -> dict[str, float]:
    """Macro-F1 over the Ekman six + neutral and over all labels, and the keyword baseline's."""
    keywords = [keyword_emotion(t) for t in texts]
    return {
        "dev_macro_f1_ekman": round(ekman_f1(gold, predicted), 4),
        "dev_macro_f1_plutchik": round(macro_f1(gold, predicted, LABELS), 4),
        "keyword_baseline_dev_macro_f1_ekman": round(ekman_f1(gold, keywords), 4),
        "keyword_baseline_dev_macro_f1_plutchik": round(macro_f1(gold, keywords, LABELS), 4),
    }


def train_from_goemotions(folder: Path, out: Path, *, limit: int | None = None, finetune_rows: int = 0) -> dict:
    """`fit_goemotions`, then save the classifier with its report to `out`."""
    classifier, report = fit_goemotions(folder, limit=limit, finetune_rows=finetune_rows)
    classifier.save(out, report)
    return report
