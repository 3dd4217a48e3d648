"""Noticing how the user feels: a fine-tuned sentence encoder and a softmax over words, VADER for intensity.

The eight categories are Plutchik's (roadmap 6.1). On GoEmotions the reader averages two views of
a message: MiniLM fine-tuned for emotion (ONNX, ``emotion.onnx``) and a softmax over words and word
pairs (``emotion.json``), both trained by ``bitzero.companion.emotion_training``; where no
GoEmotions copy is at hand the softmax reads the frozen sentence embedding instead. The roadmap's
keyword matcher is kept only as the baseline it is measured against. What is detected shapes the reply (a note in the model's
context); whether it is *stored* is the privacy settings' decision.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitzero.errors import CompanionError
from bitzero.files import write_atomically

EMOTIONS = ("joy", "sadness", "anger", "fear", "surprise", "disgust", "trust", "anticipation")
LABELS = (*EMOTIONS, "neutral")
# Which way each emotion leans (surprise either way): a good-news note asks for shared happiness, not
# the empathy a sad one asks for. SmolLM2 answered "I'm sorry for your loss." to "I just got the job I
# wanted!" in 6 of 24 samples with no note, 4 with "...respond with empathy." and 0 with "...share
# their happiness." (teacher int4, four good-news messages, 6 seeds each, the service's decoding).
VALENCE = {"joy": "positive", "trust": "positive", "anticipation": "positive",
           "sadness": "negative", "anger": "negative", "fear": "negative", "disgust": "negative"}
EMOTION_FILE = "emotion.json"  # its name in data/06_models/emotion/ and inside a bundle
ENCODER_FILE = "emotion.onnx"  # the fine-tuned encoder beside it (when there is one) ...
ENCODER_TOKENIZER_FILE = "emotion-tokenizer.json"  # ... with its tokenizer

# The roadmap's keyword matcher (user-recommendations §6.1): the baseline, never the detector.
KEYWORDS = {
    "joy": ["happy", "glad", "excited", "pleased", "delighted", "joy"],
    "sadness": ["sad", "unhappy", "depressed", "down", "blue", "upset"],
    "anger": ["angry", "mad", "furious", "annoyed", "irritated"],
    "fear": ["afraid", "scared", "worried", "anxious", "nervous"],
    "surprise": ["surprised", "amazed", "astonished", "shocked"],
    "disgust": ["disgusted", "repulsed", "revolted"],
    "trust": ["trust", "believe", "rely", "depend"],
    "anticipation": ["looking forward", "excited about", "can't wait"],
}


def keyword_emotion(text: str) -> str:
    """The baseline: the emotion with most keyword hits (substring match), else neutral."""
    lowered = text.lower()
    scores = {e: sum(k in lowered for k in words) for e, words in KEYWORDS.items()}
    best = max(scores, key=lambda e: scores[e])
    return best if scores[best] > 0 else "neutral"


class EmotionModelError(CompanionError, RuntimeError):
    """The classifier file is missing or does not fit the embedder."""


_WORD = re.compile(r"(?u)\b\w\w+\b")


def text_features(text: str) -> list[str]:
    """Lower-cased words and adjacent word pairs: lexical cues ("thanks", "lol", "so sorry")
    that a sentence embedding blurs."""
    words = _WORD.findall(text.lower())
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


class EmotionEncoder:
    """MiniLM fine-tuned for emotion, through onnxruntime: texts -> label probabilities. Held as
    bytes (the ONNX graph, the tokenizer's JSON) so a freshly trained one needs no scratch files."""

    def __init__(self, model: bytes, tokenizer: str, labels: tuple[str, ...], threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model, self.tokenizer, self.labels = model, tokenizer, labels
        self._tokenizer = Tokenizer.from_str(tokenizer)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    @classmethod
    def load(cls, folder: Path, labels: tuple[str, ...], threads: int = 1) -> EmotionEncoder:
        files = (folder / ENCODER_FILE, folder / ENCODER_TOKENIZER_FILE)
        for file in files:
            if not file.is_file():
                raise EmotionModelError(f"the emotion classifier needs {file}, which is missing")
        return cls(files[0].read_bytes(), files[1].read_text(encoding="utf-8"), labels, threads)

    def save(self, folder: Path) -> None:
        write_atomically(folder / ENCODER_FILE, self.model)
        write_atomically(folder / ENCODER_TOKENIZER_FILE, self.tokenizer.encode("utf-8"))

    def probabilities(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        rows = []
        for start in range(0, len(texts), batch_size):
            encodings = self._tokenizer.encode_batch(texts[start : start + batch_size])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            rows.append(softmax(self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]))
        return np.concatenate(rows) if rows else np.zeros((0, len(self.labels)), dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


class EmotionClassifier:
    """Softmax over [tf-idf of words and word pairs | sentence embedding]; labels are ``LABELS``;
    with an ``encoder``, its probabilities are averaged in with weight ``encoder_weight``.

    Pure numpy (and onnxruntime for the encoder) at prediction time, so serving needs no
    scikit-learn or torch: the vocabulary, idf and weights are plain arrays in one JSON file.
    """

    def __init__(
        self, weights: np.ndarray, bias: np.ndarray, labels: tuple[str, ...] = LABELS,
        vocabulary: dict[str, int] | None = None, idf: np.ndarray | None = None,
        encoder: EmotionEncoder | None = None, encoder_weight: float = 0.5,
    ) -> None:
        self.vocabulary = vocabulary or {}
        self.idf = np.asarray(idf if idf is not None else np.zeros(0), dtype=np.float32)
        if len(self.idf) != len(self.vocabulary):
            raise EmotionModelError(f"{len(self.vocabulary)} vocabulary entries but {len(self.idf)} idf values")
        if weights.ndim != 2 or weights.shape[1] != len(labels) or bias.shape != (len(labels),):
            raise EmotionModelError(f"weights {weights.shape} / bias {bias.shape} do not fit {len(labels)} labels")
        self.weights, self.bias, self.labels = weights.astype(np.float32), bias.astype(np.float32), labels
        self.text_dims = len(self.vocabulary)
        if encoder is not None and encoder.labels != labels:
            raise EmotionModelError(f"the encoder's labels {encoder.labels} are not the classifier's {labels}")
        self.encoder, self.encoder_weight = encoder, encoder_weight

    @property
    def embedding_dims(self) -> int:
        """How many sentence-embedding dimensions the softmax reads (0: words only)."""
        return self.weights.shape[0] - self.text_dims

    def tfidf(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(indices, values) of the text's L2-normalised sublinear tf-idf vector."""
        counts: dict[int, int] = {}
        for feature in text_features(text):
            index = self.vocabulary.get(feature)
            if index is not None:
                counts[index] = counts.get(index, 0) + 1
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        indices = np.fromiter(counts, dtype=np.int64)
        values = (1 + np.log(np.fromiter(counts.values(), dtype=np.float32))) * self.idf[indices]
        return indices, values / np.linalg.norm(values)

    def probabilities(self, vectors: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
        """One row a message; ``vectors`` are its sentence embeddings (unused when the softmax reads
        words only and may then have zero columns)."""
        if (self.text_dims or self.encoder is not None) and (texts is None or len(texts) != len(vectors)):
            raise EmotionModelError("this classifier reads the text as well as its embedding")
        words = self.word_probabilities(vectors, texts or [])
        if self.encoder is None or texts is None:
            return words
        return self.blend(words, self.encoder.probabilities(texts))

    def word_probabilities(self, vectors: np.ndarray, texts: list[str]) -> np.ndarray:
        """The softmax over words (and embedding dimensions) alone."""
        logits = vectors[:, : self.embedding_dims] @ self.weights[self.text_dims :] + self.bias
        for row, text in enumerate(texts if self.text_dims else []):
            indices, values = self.tfidf(text)
            logits[row] += values @ self.weights[indices]
        return softmax(logits)

    def blend(self, words: np.ndarray, encoded: np.ndarray) -> np.ndarray:
        """The word softmax's and the encoder's probabilities averaged with ``encoder_weight``."""
        return (1 - self.encoder_weight) * words + self.encoder_weight * encoded

    def predict(self, vectors: np.ndarray, texts: list[str] | None = None) -> list[str]:
        return [self.labels[i] for i in self.probabilities(vectors, texts).argmax(axis=1)]

    def save(self, path: str | Path, metrics: dict | None = None) -> Path:
        """The JSON file at ``path``, the encoder's files beside it (written first: the JSON, replaced
        last, is what makes the new classifier the one that loads)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        encoder = None
        if self.encoder is not None:
            self.encoder.save(path.parent)
            encoder = {"model": ENCODER_FILE, "tokenizer": ENCODER_TOKENIZER_FILE, "weight": self.encoder_weight}
        data = {"format": "bitzero-emotion", "version": 3, "labels": list(self.labels),
                "vocabulary": sorted(self.vocabulary, key=self.vocabulary.__getitem__),
                "idf": self.idf.round(5).tolist(), "bias": self.bias.tolist(),
                "weights": self.weights.round(5).tolist(), "encoder": encoder, "metrics": metrics or {}}
        return write_atomically(path, json.dumps(data).encode("utf-8"))

    @classmethod
    def load(cls, path: str | Path, threads: int = 1) -> EmotionClassifier:
        path = Path(path)
        if not path.is_file():
            raise EmotionModelError(f"no emotion classifier at {path}; train one with `bitzero emotion train`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EmotionModelError(f"{path} cannot be read: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != "bitzero-emotion":
            raise EmotionModelError(f"{path} is not a BitZero emotion classifier")
        vocabulary = {feature: i for i, feature in enumerate(data.get("vocabulary", []))}
        labels = tuple(data["labels"])
        spec = data.get("encoder")
        encoder = EmotionEncoder.load(path.parent, labels, threads) if spec else None
        weights = np.array(data["weights"], dtype=np.float32).reshape(-1, len(labels))  # (0, labels) saves as []
        return cls(weights, np.array(data["bias"], dtype=np.float32),
                   labels, vocabulary, np.array(data.get("idf", []), dtype=np.float32),
                   encoder, float(spec["weight"]) if spec else 0.5)


def emotion_files(path: str | Path) -> dict[str, Path]:
    """The files of the classifier saved at ``path``, by their names in a bundle (the JSON and,
    when it names one, the encoder's two)."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    spec = data.get("encoder") or {}
    return {EMOTION_FILE: path, **{spec[k]: path.parent / spec[k] for k in ("model", "tokenizer") if k in spec}}


@dataclass(frozen=True)
class Reading:
    emotion: str  # one of LABELS
    confidence: float  # the classifier's probability of that label
    intensity: str  # "mild" | "strong"
    sentiment: float  # VADER compound, -1..1


class EmotionDetector:
    """Classifier for the category, VADER's compound score for how strongly it is felt.

    Below ``min_confidence`` the reading is neutral, so no note acts on a weak guess, unless the
    emotions of one valence together reach ``min_valence``: then it is that side's most likely one
    (personal news such as "I just got the job I wanted!" spreads over joy, anticipation and trust,
    none alone above 0.4). Measured on GoEmotions dev with the demo's reader, notes that get the
    valence right / emotional messages found: 0.4 alone 88% positive, 73% negative / 61%; with
    ``min_valence`` 0.5: 87%, 69% / 68%. On the top label alone: at 0.4 the readings that name an
    emotion are right 78% of the time and find 59% of the emotional messages (macro-F1 0.603); at
    0.3, 73% and 67% (0.628); with no threshold, 70% and 70% (0.626). A wrong note costs more than
    none, hence 0.4."""

    def __init__(self, classifier: EmotionClassifier, min_confidence: float = 0.4, min_valence: float = 0.5) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.classifier = classifier
        self.min_confidence = min_confidence
        self.min_valence = min_valence
        self._vader = SentimentIntensityAnalyzer()

    def read(self, text: str, vector: np.ndarray) -> Reading:
        probs = dict(zip(self.classifier.labels, self.classifier.probabilities(vector[None, :], [text])[0].tolist(),
                         strict=True))
        label = max(probs, key=probs.__getitem__)
        if probs[label] < self.min_confidence:
            label = self._leaning(probs)
        confidence = probs[label]
        sentiment = float(self._vader.polarity_scores(text)["compound"])
        strong = confidence >= 0.7 and abs(sentiment) >= 0.5
        return Reading(label, confidence, "strong" if strong else "mild", sentiment)

    def _leaning(self, probs: dict[str, float]) -> str:
        """The most likely emotion of the valence whose emotions together reach ``min_valence``, else neutral."""
        for side in ("positive", "negative"):
            felt = {label: p for label, p in probs.items() if VALENCE.get(label) == side}
            if felt and sum(felt.values()) >= self.min_valence:
                return max(felt, key=felt.__getitem__)
        return "neutral"


def context_note(reading: Reading) -> str | None:
    """The line the model's context gets about the user's current feeling."""
    if reading.emotion == "neutral":
        return None
    answer = "share their happiness" if VALENCE.get(reading.emotion) == "positive" else "respond with empathy"
    return f"The user seems to feel {reading.emotion} ({reading.intensity}); {answer}."
