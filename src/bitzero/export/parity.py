"""How closely an exported variant matches the PyTorch model, on held-out token sequences.

* Logits: every position of every sequence, one full forward each. ``max_abs_error`` is the
  largest |onnx - torch|; ``max_rel_error`` divides it by the largest |torch logit| of the same
  sequence (element-wise ratios blow up near zero logits and say nothing).
* ``top1_agreement``: share of positions where both pick the same next token (teacher forced).
* Greedy generation from held-out prompts, each side running its own KV-cached decoding:
  ``greedy_identical`` is the share of prompts whose continuations are identical, and
  ``greedy_agreement`` the share of PyTorch's generated tokens that the variant reproduces at
  the same position (a token past the end of the other side's continuation counts as different).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bitzero.export.runtime import BundleRuntime
from bitzero.model import BitZeroLM


def logit_parity(model: BitZeroLM, runtime: BundleRuntime, sequences: Sequence[Sequence[int]]) -> dict[str, float]:
    """Max absolute and relative logit error and top-1 agreement over all positions."""
    max_abs = max_rel = 0.0
    agree = positions = 0
    for ids in sequences:
        with torch.no_grad():
            reference = model(torch.tensor([list(ids)]))[0][0].float().numpy()
        got, _ = runtime.forward(ids)
        error = float(np.abs(got - reference).max())
        max_abs = max(max_abs, error)
        max_rel = max(max_rel, error / max(float(np.abs(reference).max()), 1e-12))
        agree += int((got.argmax(-1) == reference.argmax(-1)).sum())
        positions += len(ids)
    return {"max_abs_error": max_abs, "max_rel_error": max_rel, "top1_agreement": agree / max(positions, 1)}


def greedy_parity(
    model: BitZeroLM, runtime: BundleRuntime, prompts: Sequence[Sequence[int]], max_tokens: int, stop_ids: Sequence[int]
) -> dict[str, Any]:
    """Greedy continuations of both sides, compared token by token."""
    identical = matched = total = 0
    examples = []
    for prompt in prompts:
        budget = min(max_tokens, model.config.block_size - len(prompt))
        reference = model.generate(list(prompt), budget, temperature=0.0, stop_ids=tuple(stop_ids))
        got = list(runtime.token_ids(prompt, max_tokens=budget))
        identical += int(got == reference)
        matched += sum(a == b for a, b in zip(got, reference, strict=False))
        total += max(len(reference), len(got))
        if len(examples) < 3:
            examples.append({"prompt_tokens": len(prompt), "torch": reference, "onnx": got})
    return {
        "greedy_identical": identical / max(len(prompts), 1),
        "greedy_agreement": matched / max(total, 1),
        "greedy_tokens": total,
        "examples": examples,
    }
