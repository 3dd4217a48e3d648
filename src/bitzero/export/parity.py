"""How closely an exported variant matches the PyTorch model, on held-out token sequences.

PyTorch's side is computed once (``torch_reference``) and every variant is compared with it:
* Logits: every position of every sequence, one full forward each. ``max_abs_error`` is the
  largest |onnx - torch|; ``max_rel_error`` divides it by the largest |torch logit| of the same
  sequence (element-wise ratios blow up near zero logits and say nothing).
  ``median_rel_error`` is the same ratio at the median position: it separates a variant whose
  arithmetic matches (rare int8 rounding flips, median ~1e-7) from one that approximates.
* ``top1_agreement``: share of positions where both pick the same next token (teacher forced).
* Greedy generation from held-out prompts, each side running its own KV-cached decoding:
  ``greedy_identical`` is the share of prompts whose continuations are identical, and
  ``greedy_agreement`` the share of generated tokens that agree at the same position (a token
  past the end of the other side's continuation counts as different). Where the two diverge,
  ``greedy_divergence_margin`` is the largest gap, in the variant's own logits at the first
  differing step, between its pick and PyTorch's: a gap below the logit error means the
  divergence is a near-tie broken the other way, not a different model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from bitzero.model import BitZeroLM
from bitzero.serving.runtime import BundleRuntime


@dataclass(frozen=True)
class Reference:
    """PyTorch's logits per held-out sequence and greedy continuation per prompt."""

    sequences: list[list[int]]
    logits: list[np.ndarray]
    prompts: list[list[int]]
    generations: list[list[int]]


@torch.no_grad()
def torch_reference(
    model: BitZeroLM,
    sequences: Sequence[Sequence[int]],
    prompts: Sequence[Sequence[int]],
    max_tokens: int,
    stop_ids: Sequence[int],
) -> Reference:
    logits = [model(torch.tensor([list(ids)]))[0][0].float().numpy()
              for ids in tqdm(sequences, desc="PyTorch reference logits", unit="sequence")]
    generations = [
        model.generate(list(p), min(max_tokens, model.config.block_size - len(p)), temperature=0.0, stop_ids=tuple(stop_ids))
        for p in tqdm(prompts, desc="PyTorch reference replies", unit="reply")
    ]
    return Reference([list(s) for s in sequences], logits, [list(p) for p in prompts], generations)


def compare(runtime: BundleRuntime, reference: Reference, max_tokens: int) -> dict[str, Any]:
    """Logit errors, top-1 agreement and greedy agreement of one variant against PyTorch."""
    abs_errors, rel_errors = [], []
    agree = 0
    pairs = zip(reference.sequences, reference.logits, strict=True)
    for ids, expected in tqdm(pairs, total=len(reference.sequences), desc=f"parity logits ({runtime.variant})",
                              unit="sequence"):
        got, _ = runtime.forward(ids)
        per_position = np.abs(got - expected).max(axis=-1)
        abs_errors.append(per_position)
        rel_errors.append(per_position / max(float(np.abs(expected).max()), 1e-12))
        agree += int((got.argmax(-1) == expected.argmax(-1)).sum())
    abs_all, rel_all = np.concatenate(abs_errors), np.concatenate(rel_errors)
    identical = matched = total = 0
    margin = 0.0
    replies = zip(reference.prompts, reference.generations, strict=True)
    for prompt, expected_ids in tqdm(replies, total=len(reference.prompts), desc=f"parity replies ({runtime.variant})",
                                     unit="reply"):
        budget = min(max_tokens, runtime.context_length - len(prompt))
        got_ids = list(runtime.token_ids(prompt, max_tokens=budget))
        identical += int(got_ids == expected_ids)
        matched += sum(a == b for a, b in zip(got_ids, expected_ids, strict=False))
        total += max(len(expected_ids), len(got_ids))
        step = next((i for i, (a, b) in enumerate(zip(got_ids, expected_ids, strict=False)) if a != b), None)
        if step is not None:
            logits, _ = runtime.forward(prompt + expected_ids[:step])
            margin = max(margin, float(logits[-1, got_ids[step]] - logits[-1, expected_ids[step]]))
    return {
        "max_abs_error": float(abs_all.max()),
        "max_rel_error": float(rel_all.max()),
        "p99_rel_error": float(np.quantile(rel_all, 0.99)),
        "median_rel_error": float(np.median(rel_all)),
        "top1_agreement": agree / max(len(rel_all), 1),
        "greedy_identical": identical / max(len(reference.prompts), 1),
        "greedy_agreement": matched / max(total, 1),
        "greedy_tokens": total,
        "greedy_divergence_margin": margin,
        "provider": runtime.provider,
    }
