"""BitLinear: the BitNet b1.58 linear layer, with hybrid-precision "critical" output channels.

Recipe (docs/references.md §1):

* weights: gamma = mean|W| over the ternary channels; W_q = RoundClip(W / (gamma + eps), -1, 1);
  the forward uses W_q * gamma;
* activations: per-token absmax int8, s = 127 / max|x| (max clamped to 1e-5), round, clip to
  [-128, 127], divide by s;
* straight-through estimator on both (``x + (q(x) - x).detach()``), so the latent weights stay in
  full precision and receive the gradient of the quantized forward.

RMS normalisation is NOT done here: the transformer's pre-norms feed q/k/v and gate/up, and the
optional SubLN norms (BitNet 2B4T) feed o_proj and down_proj; per-token absmax quantization is
scale-free, so without SubLN those two only see unnormalised (but exactly quantized) inputs.

Critical channels ("hybrid precision"): the ``round(ratio * out_features)`` output channels whose
latent weight rows lose the most to ternary rounding (squared error against their absmean-ternary
value) keep full-precision weights; on pretrained weights this keeps the outlier rows that
ternary rounding would wreck (docs/references.md §8.2: 19.8 -> 12.1 nats untrained at 10%). The mask is a function
of the weights and is recomputed whenever the weights have changed since it was last computed
(tracked by the parameter's version counter). In training that is every step, so channels can
migrate as they grow, at the cost of a small jump in a channel's effective weights when it switches
between full precision and ternary; fixing the mask after a warm-up would avoid those jumps but
freeze a choice made on half-trained weights. In eval mode the weights do not change, so the mask
is frozen, and it is stored as a buffer: an export reads exactly the mask the forward used, and a
loaded state dict's mask is adopted as is.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_EPS = 1e-5
ACT_CLAMP = 1e-5
ACT_QMAX = 127

ADAPTIVE = "adaptive"


def adaptive_critical_ratio(block_idx: int, n_layer: int) -> float:
    """Higher precision for the first and last block and the first third (the user's recipe)."""
    if block_idx == 0 or block_idx == n_layer - 1:
        return 0.15
    if block_idx < n_layer // 3:
        return 0.12
    return 0.08


def block_critical_ratio(setting: str | float, block_idx: int, n_layer: int) -> float:
    """Resolve a ``critical_ratio`` setting ("adaptive" or a fixed fraction) for one block."""
    if setting == ADAPTIVE:
        return adaptive_critical_ratio(block_idx, n_layer)
    if isinstance(setting, str):
        raise ValueError(f"critical_ratio must be {ADAPTIVE!r} or a number, got {setting!r}")
    if not 0.0 <= float(setting) < 1.0:
        raise ValueError(f"critical_ratio must be in [0, 1), got {setting}")
    return float(setting)


def quantize_activations(x: torch.Tensor) -> torch.Tensor:
    """Per-token absmax int8 fake quantization (values on the int8 grid, divided back by s)."""
    scale = ACT_QMAX / x.abs().amax(dim=-1, keepdim=True).clamp(min=ACT_CLAMP)
    return (x * scale).round().clamp(-ACT_QMAX - 1, ACT_QMAX) / scale


def ternary_gamma(
    weight: torch.Tensor, critical_mask: torch.Tensor | None = None, per_row: bool = False
) -> torch.Tensor:
    """gamma = mean|W| over the ternary rows only (critical rows would inflate it); per row, each
    row's own mean |W| as an (out, 1) column."""
    if per_row:
        return weight.abs().mean(dim=1, keepdim=True)
    if critical_mask is None or not bool(critical_mask.any()):
        return weight.abs().mean()
    ternary_rows = (~critical_mask).to(weight.dtype).unsqueeze(1)
    count = ternary_rows.sum() * weight.shape[1]
    return (weight.abs() * ternary_rows).sum() / count.clamp(min=1)


def ternary_codes(weight: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """RoundClip(W / (gamma + eps), -1, 1): the codes in {-1, 0, +1}."""
    return (weight / (gamma + WEIGHT_EPS)).round().clamp(-1, 1)


def quantize_weights(
    weight: torch.Tensor, critical_mask: torch.Tensor | None = None, per_row: bool = False
) -> torch.Tensor:
    """Effective weights: W_q * gamma on ternary rows, the latent weights on critical rows."""
    gamma = ternary_gamma(weight, critical_mask, per_row)
    quantized = ternary_codes(weight, gamma) * gamma
    if critical_mask is None:
        return quantized
    return torch.where(critical_mask.unsqueeze(1), weight, quantized)


def straight_through(x: torch.Tensor, quantized: torch.Tensor, mix: float = 1.0) -> torch.Tensor:
    """Forward ``x + mix * (quantized - x)``, backward identity to ``x`` (no graph needed when x
    needs no grad); mix 1 is the plain straight-through estimator."""
    if mix == 1.0:
        return quantized if not x.requires_grad else x + (quantized - x).detach()
    return x + mix * (quantized - x).detach()


def top_rows_by_error(weight: torch.Tensor, count: int, per_row: bool = False) -> torch.Tensor:
    """Boolean mask of the ``count`` output channels with the largest ternary rounding error."""
    mask = torch.zeros(weight.shape[0], dtype=torch.bool, device=weight.device)
    if count > 0:
        weight = weight.detach()
        error = (weight - quantize_weights(weight, per_row=per_row)).pow(2).sum(dim=1)
        mask[error.topk(count).indices] = True
    return mask


class BitLinear(nn.Module):
    """Linear layer with ternary weights, int8 activations and full-precision critical channels."""

    critical_mask: torch.Tensor  # a buffer (register_buffer in __init__)

    def __init__(
        self, in_features: int, out_features: int, critical_ratio: float = 0.0, bias: bool = False,
        mask_frozen: bool = False, per_row_scale: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= critical_ratio < 1.0:
            raise ValueError(f"critical_ratio must be in [0, 1), got {critical_ratio}")
        self.in_features = in_features
        self.out_features = out_features
        self.critical_ratio = critical_ratio
        self.n_critical = round(critical_ratio * out_features)
        self.mask_frozen = mask_frozen
        # One gamma per output row instead of per tensor (fitted scales; bitzero.export packs a
        # scale a row either way).
        self.per_row_scale = per_row_scale
        # Share of the quantization applied in training (1: full b1.58). A warm-up ramps it from 0
        # so a converted pretrained model drifts into ternary instead of dropping into it.
        self.quant_mix = 1.0
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.register_buffer("critical_mask", torch.zeros(out_features, dtype=torch.bool))
        nn.init.normal_(self.weight, std=0.02)
        self._mask_key: tuple[int, int] | None = None
        self._cache: torch.Tensor | None = None
        self._cache_key: tuple[int, int] | None = None

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"critical={self.n_critical}/{self.out_features}, per_row_scale={self.per_row_scale}"
        )

    def _weight_key(self) -> tuple[int, int]:
        # The version counter moves on every in-place change (optimizer steps, copy_ on load);
        # the data pointer catches a replaced .data or a device move.
        return (self.weight._version, self.weight.data_ptr())

    def refresh_critical_mask(self) -> None:
        """Re-select the critical channels from the current latent weights."""
        with torch.no_grad():
            self.critical_mask.copy_(top_rows_by_error(self.weight, self.n_critical, self.per_row_scale))
        self._mask_key = self._weight_key()

    def freeze_mask(self) -> None:
        """Choose the critical channels once more from the current weights, then keep them.

        Re-chosen every step, a row that crosses the selection threshold jumps between its latent and
        its ternary value, which costs the student (measured in the README's distillation section)."""
        self._sync_mask()
        self.mask_frozen = True

    def _sync_mask(self) -> None:
        if not self.mask_frozen and self._mask_key != self._weight_key():
            self.refresh_critical_mask()

    def effective_weight(self) -> torch.Tensor:
        """The weights the forward multiplies by (detached; for reports and export)."""
        self._sync_mask()
        return quantize_weights(self.weight.detach(), self.critical_mask, self.per_row_scale)

    def ternary_codes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes in {-1,0,1} for every row, gamma: 0-d, or (out, 1) per row); critical rows'
        codes are meaningless."""
        self._sync_mask()
        weight = self.weight.detach()
        gamma = ternary_gamma(weight, self.critical_mask, self.per_row_scale)
        return ternary_codes(weight, gamma), gamma

    def _cached_weight(self) -> torch.Tensor:
        key = self._weight_key()
        if self._cache is None or self._cache_key != key:
            self._cache = self.effective_weight()
            self._cache_key = key
        return self._cache

    def drop_cache(self) -> None:
        self._cache = None
        self._cache_key = None

    @property
    def has_cache(self) -> bool:
        return self._cache is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Quantizers see detached inputs: their graph would be cut by the STE anyway.
        mix = self.quant_mix if self.training else 1.0
        if self.training:
            self._sync_mask()
            quantized = quantize_weights(self.weight.detach(), self.critical_mask, self.per_row_scale)
            weight = straight_through(self.weight, quantized, mix)
        else:
            weight = self._cached_weight()
        x = straight_through(x, quantize_activations(x.detach()), mix)
        return F.linear(x, weight, self.bias)

    def train(self, mode: bool = True) -> BitLinear:
        self.drop_cache()
        return super().train(mode)

    def _apply(self, fn: Any, recurse: bool = True) -> BitLinear:
        self.drop_cache()
        return super()._apply(fn, recurse)

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        # After an optimizer step the buffer still holds the mask of the previous weights:
        # bring it up to date so a stored mask always belongs to the stored weights.
        self._sync_mask()
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self.drop_cache()
        # A stored mask belongs to the stored weights: adopt it (ties stay as exported).
        # Without one (e.g. a full-precision teacher's weights), select afresh.
        if prefix + "critical_mask" in state_dict:
            self._mask_key = self._weight_key()
        else:
            self.refresh_critical_mask()


def layer_report(layer: BitLinear) -> dict[str, float]:
    """Real fractions of one layer (from the mask the forward uses, not from the setting):
    what share is ternary, and how the codes are spread."""
    codes, gamma = layer.ternary_codes()
    ternary = codes[~layer.critical_mask]
    n_ternary = max(ternary.numel(), 1)
    return {
        "n_weights": layer.weight.numel(),
        "ternary_fraction": ternary.numel() / layer.weight.numel(),
        "critical_fraction": float(layer.critical_mask.sum()) / layer.out_features,
        "share_minus1": float((ternary == -1).sum()) / n_ternary,
        "share_zero": float((ternary == 0).sum()) / n_ternary,
        "share_plus1": float((ternary == 1).sum()) / n_ternary,
        "gamma": float(gamma.mean()),
    }
