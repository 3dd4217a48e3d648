"""The conversion ladder: a full-precision model's weights made ternary with the calibration
data's help before any training, each rung measured and kept only if it lowers the held-out NLL.

Rungs, each starting from the best one so far: ``absmean`` (BitNet's PTQ, as converted) ->
``fitted_scales`` (least-squares scales alternating with re-thresholding, activation-weighted) ->
``saliency`` (the critical rows chosen by their activation-weighted error instead of their weight
error) -> ``gptq`` (data-aware rounding with error compensation, its critical rows chosen by
saliency as well: its codes have a larger weight error by design) -> ``blockwise`` (each decoder
block trained alone to reproduce its full-precision output, ``bitzero.train.blockwise``). The calibration statistics
H = X^T X of every BitLinear's inputs come from the student run at full precision (its latent
weights are the teacher's), the assistant tokens of calibration conversations counting fully and
the rest by ``context_weight``. The number of critical rows stays the student's setting throughout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from bitzero.errors import TrainingError
from bitzero.model import BitZeroLM
from bitzero.model.bitlinear import BitLinear
from bitzero.train.batching import Example
from bitzero.train.blockwise import BlockSettings, reconstruct_blocks
from bitzero.train.ternary_fit import fit_scales, gptq_ternary, latent_weights, refit_scales, row_saliency

RUNGS = ("absmean", "fitted_scales", "saliency", "gptq", "blockwise")
SCALE_BITS = 32
CRITICAL_BITS = 32  # critical rows are stored as fp32


class ConversionError(TrainingError, ValueError):
    """A conversion setting or calibration set that cannot work."""


@dataclass(frozen=True)
class LadderSettings:
    rungs: Sequence[str] = RUNGS
    calibration_conversations: int = 16
    context_weight: float = 0.1  # weight of non-assistant tokens in X^T X
    seq_len: int = 256
    gptq_block: int = 128
    gptq_damp: float = 0.01
    blockwise: BlockSettings = BlockSettings()

    def __post_init__(self) -> None:
        unknown = [rung for rung in self.rungs if rung not in RUNGS]
        if unknown or not self.rungs or self.rungs[0] != RUNGS[0]:
            raise ConversionError(f"rungs must start with {RUNGS[0]!r} and come from {RUNGS}, got {list(self.rungs)}")
        if not 0.0 <= self.context_weight <= 1.0:
            raise ConversionError(f"context_weight must be in [0, 1], got {self.context_weight}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LadderSettings:
        return cls(**{**values, "blockwise": BlockSettings(**values.get("blockwise", {}))})


@dataclass
class LayerState:
    """One BitLinear's conversion: codes, scale(s), critical rows (and their weights when they
    are no longer the teacher's)."""

    codes: torch.Tensor
    scales: torch.Tensor
    critical: torch.Tensor
    rows: torch.Tensor | None = None


State = dict[str, LayerState]


@contextmanager
def full_precision(model: BitZeroLM) -> Iterator[BitZeroLM]:
    """The model computing with its latent weights and float activations (quantization mixed in
    at 0), without gradients; its mode and mixes are restored after."""
    layers = [layer for _, layer in model.bit_linears()]
    mixes, was_training = [layer.quant_mix for layer in layers], model.training
    for layer in layers:
        layer.quant_mix = 0.0
    model.train()
    try:
        with torch.no_grad():
            yield model
    finally:
        for layer, mix in zip(layers, mixes, strict=True):
            layer.quant_mix = mix
        model.train(was_training)


def _calibration_inputs(
    examples: Sequence[Example], seq_len: int, context_weight: float, device: torch.device | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(ids (1, T), per-position weight (T,)) per conversation: 1 where the next token is the
    assistant's, ``context_weight`` elsewhere."""
    inputs = []
    for example in examples:
        ids = list(example.ids)[-(seq_len + 1) :]
        mask = list(example.loss_mask)[-(seq_len + 1) :]
        weight = torch.tensor([1.0 if m else context_weight for m in mask[1:]], device=device)
        inputs.append((torch.tensor([ids[:-1]], device=device), weight))
    return inputs


def _set_sub_norm_gains(model: BitZeroLM, inputs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """SubLN gains set to their input's mean RMS, so inserting them changes what the network computes
    as little as one scalar can (gain 1 would rescale o_proj's and down_proj's inputs)."""
    norms = {name: module for name, module in model.named_modules() if name.endswith(".sub_norm") and hasattr(module, "weight")}
    if not norms:
        return
    totals = dict.fromkeys(norms, 0.0)
    count = 0
    hooks = [
        module.register_forward_pre_hook(
            lambda _m, args, name=name: totals.__setitem__(name, totals[name] + float(args[0].float().pow(2).mean(-1).sqrt().sum()))
        )
        for name, module in norms.items()
    ]
    try:
        with full_precision(model):
            for ids, _ in inputs:
                model(ids)
                count += ids.shape[1]
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        for name, module in norms.items():
            module.weight.fill_(totals[name] / count)


def calibrate(model: BitZeroLM, examples: Sequence[Example], settings: LadderSettings) -> dict[str, torch.Tensor]:
    """H = sum_t w_t x_t x_t^T of every BitLinear's input (layers fed the same input share one H)."""
    if not examples:
        raise ConversionError("the conversion needs calibration conversations")
    inputs = _calibration_inputs(examples[: settings.calibration_conversations], settings.seq_len, settings.context_weight,
                                 model.embed.weight.device)
    _set_sub_norm_gains(model, inputs)
    hessians: dict[str, torch.Tensor] = {}
    last: dict[str, Any] = {"input": None, "name": None}
    token_weight = torch.zeros(0)

    def accumulate(name: str, x: torch.Tensor) -> None:
        if last["input"] is x:  # q/k/v and gate/up read one tensor
            hessians[name] = hessians[last["name"]]
            return
        last.update(input=x, name=name)
        flat = x.detach().float().reshape(-1, x.shape[-1]) * token_weight.sqrt().unsqueeze(1)
        hessians[name] = hessians.get(name, x.new_zeros(x.shape[-1], x.shape[-1], dtype=torch.float32)) + flat.T @ flat

    hooks = [layer.register_forward_pre_hook(lambda _m, args, name=name: accumulate(name, args[0]))
             for name, layer in model.bit_linears()]
    try:
        with full_precision(model):
            for ids, weight in inputs:
                token_weight = weight
                last.update(input=None, name=None)
                model(ids)
    finally:
        for hook in hooks:
            hook.remove()
    return hessians


def _top_rows(error: torch.Tensor, count: int) -> torch.Tensor:
    mask = torch.zeros(error.shape[0], dtype=torch.bool, device=error.device)
    if count > 0:
        mask[error.topk(count).indices] = True
    return mask


def _by_weight_error(weight: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, count: int) -> LayerState:
    return LayerState(codes, scales, _top_rows((weight - codes * scales).pow(2).sum(dim=1), count))


def _rung(
    name: str, best: State, weights: dict[str, torch.Tensor], hessians: dict[str, torch.Tensor],
    layers: dict[str, BitLinear], settings: LadderSettings,
) -> State:
    """Every layer's state after rung ``name``, built on the best state so far."""
    state = {}
    for key, layer in layers.items():
        weight, hessian, previous = weights[key], hessians[key], best[key]
        per_row, count = layer.per_row_scale, layer.n_critical
        codes, scales = previous.codes, previous.scales
        if name == "fitted_scales":
            codes, scales = fit_scales(weight, hessian.diagonal(), per_row)
            state[key] = _by_weight_error(weight, codes, scales, count)
            continue
        if name == "gptq":
            codes = gptq_ternary(weight, hessian, scales, settings.gptq_block, settings.gptq_damp)
            scales = refit_scales(weight, codes, hessian, per_row)
        # GPTQ's codes trade weight error for output error: only the saliency can judge its rows.
        state[key] = LayerState(codes, scales, _top_rows(row_saliency(weight, codes * scales, hessian), count))
    return state


def _read_state(model: BitZeroLM) -> State:
    """Every layer's codes, scales and critical rows as the model holds them now."""
    state = {}
    for key, layer in model.bit_linears():
        codes, scales = layer.ternary_codes()
        state[key] = LayerState(codes, scales, layer.critical_mask.clone(), layer.weight.detach().clone())
    return state


@torch.no_grad()
def apply_state(model: BitZeroLM, weights: dict[str, torch.Tensor], state: State) -> None:
    """Write codes, scales and critical rows into the BitLinears (masks frozen: they were chosen)."""
    for key, layer in model.bit_linears():
        layer_state = state[key]
        layer.mask_frozen = True
        layer.critical_mask.copy_(layer_state.critical)
        full = weights[key] if layer_state.rows is None else layer_state.rows
        layer.weight.copy_(latent_weights(full, layer_state.codes, layer_state.scales,
                                          layer_state.critical, layer.per_row_scale))
    model.config.critical_mask_frozen = True


def bits_per_weight(model: BitZeroLM) -> float:
    """Stored bits per BitLinear weight: 2-bit codes (4 a byte, rows padded), one fp32 scale per
    tensor or per ternary row, fp32 critical rows (the export's count, bitzero.export.packing)."""
    bits, weights = 0.0, 0
    for _, layer in model.bit_linears():
        critical = int(layer.critical_mask.sum())
        ternary_rows = layer.out_features - critical
        scales = ternary_rows if layer.per_row_scale else 1
        bits += 8 * ternary_rows * -(-layer.in_features // 4) + SCALE_BITS * scales
        bits += CRITICAL_BITS * critical * layer.in_features
        weights += layer.weight.numel()
    return bits / max(weights, 1)


def convert(
    model: BitZeroLM, examples: Sequence[Example], evaluate: Callable[[BitZeroLM], float], settings: LadderSettings,
) -> list[dict[str, Any]]:
    """Climb the ladder in place on a freshly converted ternary ``model`` (its latent weights are
    the teacher's); ``model`` ends at the best rung. One table row per rung: held-out NLL, minutes,
    bits per weight and whether it was kept."""
    layers = dict(model.bit_linears())
    if not layers:
        raise ConversionError("the conversion ladder needs a ternary (quantized) model")
    weights = {key: layer.weight.detach().clone() for key, layer in layers.items()}
    started = time.perf_counter()
    # Calibrated while the latent weights are still the teacher's (and before the absmean rung,
    # which then sees the same SubLN gains); its minutes count towards the first rung after.
    hessians = calibrate(model, examples, settings) if len(settings.rungs) > 1 else {}
    calibration_minutes = (time.perf_counter() - started) / 60
    started = time.perf_counter()
    best = _read_state(model)
    apply_state(model, weights, best)
    best_nll = evaluate(model)
    table = [{"rung": "absmean", "held_out_nll": best_nll, "minutes": (time.perf_counter() - started) / 60,
              "bits_per_weight": bits_per_weight(model), "kept": True}]
    for index, name in enumerate(settings.rungs[1:]):
        started = time.perf_counter() - (calibration_minutes * 60 if index == 0 else 0.0)
        if name == "blockwise":
            apply_state(model, weights, best)
            inputs = _calibration_inputs(examples[: settings.calibration_conversations], settings.seq_len,
                                         settings.context_weight, model.embed.weight.device)
            reconstruct_blocks(model, weights, inputs, settings.blockwise)
            state = _read_state(model)
        else:
            state = _rung(name, best, weights, hessians, layers, settings)
        apply_state(model, weights, state)
        nll = evaluate(model)
        kept = nll < best_nll
        if kept:
            best, best_nll = state, nll
        table.append({"rung": name, "held_out_nll": nll, "minutes": (time.perf_counter() - started) / 60,
                      "bits_per_weight": bits_per_weight(model), "kept": kept})
    apply_state(model, weights, best)
    return table
