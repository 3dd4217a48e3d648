"""Block-wise reconstruction (EfficientQAT's Block-AP, OmniQuant): each decoder block in turn is
trained alone to reproduce its full-precision output on cached calibration activations.

Per BitLinear of the block, a latent weight W and a scale alpha (one per tensor or per ternary
row) are trained through a straight-through estimator on the codes T = RoundClip(W / alpha0)
(alpha0: the scale the block started with, so a learning rate is in code units): the
forward uses alpha * T on ternary rows and W itself on the full-precision critical rows, so the
codes stay strictly ternary and the critical rows stay full precision. The latent ratio starts at
the codes the ladder chose (``pull`` > 0 moves it towards the teacher's weight inside the same
rounding bin; with lr 0.01 it measured worse on the real teacher, pull and lr not separated: GPTQ's codes lie off the nearest rounding on
purpose, and a start near the bin's edge lets the first steps undo them).
The loss is the squared error against the reference block's output, per token weighted as in
calibration (assistant tokens fully, the rest by ``context_weight``).

The reference stream runs the full-precision blocks (the teacher's weights) on their own outputs;
the student's block reads either the quantized model's own outputs so far (``feed="student"``: it
learns to correct the error it inherits) or the reference stream (``feed="teacher"``). Time, not a
step count, sizes it: the seconds budget is spread over the blocks still to do, at least one step
each, so a slow machine does fewer epochs rather than running longer (``epochs`` caps a fast one).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from bitzero.model import BitZeroLM
from bitzero.model.bitlinear import BitLinear, straight_through
from bitzero.train.ternary_fit import latent_weights

FEEDS = ("student", "teacher")


@dataclass(frozen=True)
class BlockSettings:
    seconds: float = 60.0
    epochs: float = 4.0  # at most this many passes over the calibration set per block
    lr: float = 3e-3  # in code units (a rounding bin is 1)
    scale_lr: float = 1e-3  # on log alpha
    feed: str = "student"
    batch: int = 4  # conversations per step
    pull: float = 0.0  # the latent ratio starts at most this far from its code towards the teacher's (< 0.5)

    def __post_init__(self) -> None:
        if self.feed not in FEEDS:
            raise ValueError(f"feed must be one of {FEEDS}, got {self.feed!r}")
        if not 0.0 <= self.pull < 0.5:
            raise ValueError(f"pull must be in [0, 0.5), got {self.pull}")
        if self.seconds < 0 or self.epochs <= 0 or self.batch < 1:
            raise ValueError(f"seconds must be >= 0, epochs > 0 and batch >= 1, got {self.seconds}, {self.epochs}, "
                             f"{self.batch}")


class TernaryLatent(nn.Module):
    """One BitLinear's trainable codes and scale, in units that make one learning rate fit every
    layer: ``ratio`` = W / alpha0 (its rounding gives the codes; critical rows are W / alpha0 as
    they are) and ``log_scale`` = log alpha."""

    def __init__(self, layer: BitLinear, teacher_weight: torch.Tensor, pull: float) -> None:
        super().__init__()
        codes, scales = layer.ternary_codes()
        self.critical = layer.critical_mask.clone()
        self.per_row = layer.per_row_scale
        self.unit = scales.detach().clamp(min=1e-8)
        start = codes + (teacher_weight / self.unit - codes).clamp(-pull, pull)
        self.ratio = nn.Parameter(torch.where(self.critical.unsqueeze(1), teacher_weight / self.unit, start))
        self.log_scale = nn.Parameter(self.unit.log())

    def codes(self) -> torch.Tensor:
        return self.ratio.detach().round().clamp(-1, 1)

    def latent(self) -> torch.Tensor:
        """Latent weights whose absmean rounding in BitLinear gives alpha * T on ternary rows (the
        gradient reaches the ratio through T by the straight-through estimator, and alpha directly)."""
        codes = straight_through(self.ratio, self.codes())
        ternary = ~self.critical.unsqueeze(1)
        nonzero = (self.codes() != 0).to(codes.dtype) * ternary
        if self.per_row:
            share = nonzero.mean(dim=1, keepdim=True)
        else:
            share = nonzero.sum() / (ternary.sum() * codes.shape[1]).clamp(min=1)
        return torch.where(ternary, codes * self.log_scale.exp() / share.clamp(min=1e-6), self.ratio * self.unit)

    @torch.no_grad()
    def write(self, layer: BitLinear) -> None:
        """Store the learnt codes, scale and critical rows in ``layer`` (BitLinear's own format)."""
        layer.weight.copy_(latent_weights(self.ratio * self.unit, self.codes(), self.log_scale.exp(), self.critical,
                                          self.per_row))


def _block_forward(block: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor,
                   rotary: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return functional_call(block, params, (x, rotary))


def reconstruct_blocks(
    model: BitZeroLM, teacher_weights: dict[str, torch.Tensor],
    inputs: Sequence[tuple[torch.Tensor, torch.Tensor]], settings: BlockSettings,
) -> list[float]:
    """Train every block of ``model`` in place (see the module's docstring); ``teacher_weights``
    are each BitLinear's full-precision weights by name. The per-block relative error (student
    block output vs reference, token-weighted) after training, first block to last."""
    names = {layer: name for name, layer in model.bit_linears()}
    was_training = model.training
    trainable = [parameter.requires_grad for parameter in model.parameters()]
    model.train()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with torch.no_grad():
        streams = [model.embed(ids) for ids, _ in inputs]
    references = [stream.clone() for stream in streams]
    rotaries = [model._rotary(torch.arange(ids.shape[1], device=ids.device).expand(1, -1)) for ids, _ in inputs]
    weights = [weight.view(1, -1, 1) for _, weight in inputs]
    errors = []
    started = time.perf_counter()
    blocks = list(model.blocks)
    try:
        for index, block in enumerate(blocks):
            layers = {f"{prefix}": module for prefix, module in block.named_modules() if isinstance(module, BitLinear)}
            full = {f"{prefix}.weight": teacher_weights[names[module]] for prefix, module in layers.items()}
            with torch.no_grad():
                mixes = [module.quant_mix for module in layers.values()]
                for module in layers.values():
                    module.quant_mix = 0.0
                targets = [_block_forward(block, full, x, rotary) for x, rotary in zip(references, rotaries, strict=True)]
                for module, mix in zip(layers.values(), mixes, strict=True):
                    module.quant_mix = mix
            student_in = streams if settings.feed == "student" else references
            latents = {prefix: TernaryLatent(module, teacher_weights[names[module]], settings.pull) for prefix, module in layers.items()}
            optimizer = torch.optim.Adam([
                {"params": [latent.ratio for latent in latents.values()], "lr": settings.lr},
                {"params": [latent.log_scale for latent in latents.values()], "lr": settings.scale_lr},
            ])
            deadline = started + settings.seconds * (index + 1) / len(blocks)
            order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(index)).tolist()
            steps = max(1, round(settings.epochs * len(inputs) / settings.batch))
            step = 0
            while step == 0 or (step < steps and time.perf_counter() < deadline):
                chosen = [order[(step * settings.batch + k) % len(order)] for k in range(settings.batch)]
                params = {f"{prefix}.weight": latent.latent() for prefix, latent in latents.items()}
                loss = sum(_weighted_error(_block_forward(block, params, student_in[i], rotaries[i]), targets[i], weights[i])
                           for i in chosen)
                optimizer.zero_grad()
                loss.backward()  # type: ignore[union-attr]
                optimizer.step()
                step += 1
            for prefix, latent in latents.items():
                latent.write(layers[prefix])
            with torch.no_grad():
                streams = [block(x, rotary) for x, rotary in zip(streams, rotaries, strict=True)]
                references = targets
                error = sum(_weighted_error(s, t, w) for s, t, w in zip(streams, targets, weights, strict=True))
                energy = sum(_weighted_error(torch.zeros_like(t), t, w) for t, w in zip(targets, weights, strict=True))
                errors.append(float(error / energy))
    finally:
        model.train(was_training)
        for parameter, flag in zip(model.parameters(), trainable, strict=True):
            parameter.requires_grad_(flag)
    return errors


def _weighted_error(output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return ((output - target).pow(2) * weight).mean()

