"""PyTorch model <-> packed model. Kept apart from the torch-free modules that serve.

Loading back is bit-exact: BitLinear recomputes gamma = mean|W| (per tensor or per row) from
whatever latent weights it holds, so the ternary rows are restored as codes * a, with ``a`` chosen
so that this recomputation gives back the stored gammas exactly (and the codes round back to themselves). The effective
weights, and so every forward, are then identical to the exported model's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from bitzero.export.packing import ROTARY_TABLES, PackedLinear, PackedModel, PackingError, pack_codes
from bitzero.model import BitZeroLM, ModelConfig
from bitzero.model.bitlinear import ternary_codes, ternary_gamma

_MAX_NUDGES = 256


def pack_model(model: BitZeroLM, metadata: dict | None = None) -> PackedModel:
    """The packed form of a model: a ternary model's eval-time codes, gamma and critical channels;
    a full-precision model's tensors as they are (its graph quantizes them to 4 bits itself)."""
    linears: dict[str, PackedLinear] = {}
    linear_names = set()
    for name, layer in model.bit_linears():
        codes, gamma = layer.ternary_codes()
        mask = layer.critical_mask.detach().cpu().numpy().astype(bool)
        scales = np.broadcast_to(gamma.detach().float().cpu().numpy().reshape(-1, 1), (layer.out_features, 1))
        weight = layer.weight.detach().float().cpu().numpy()
        linears[name] = PackedLinear(
            in_features=layer.in_features,
            critical_mask=mask,
            codes=pack_codes(codes.cpu().numpy()[~mask]),
            gamma=scales[~mask, 0],
            critical_weight=np.ascontiguousarray(weight[mask], dtype=np.float32),
        )
        linear_names.update({f"{name}.weight", f"{name}.critical_mask"})  # a bias stays dense, as is
    dense = {
        key: value.detach().float().cpu().numpy()
        for key, value in model.state_dict().items()
        if key not in linear_names
    }
    # The rotary tables are not in the state dict; the graph takes them as the model computed them.
    dense.update(rope_cos=model.rope_cos.cpu().numpy(), rope_sin=model.rope_sin.cpu().numpy())
    return PackedModel(model.config.to_dict(), linears, dense, dict(metadata or {}))


def _latent_weight(weight: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor, gamma: torch.Tensor,
                   per_row: bool) -> torch.Tensor:
    """Latent ternary rows whose recomputed gamma = mean|W| (per tensor, or per row where ``per_row``)
    is the stored gamma, bit for bit.

    Each scale's group (all ternary rows, or one row) gets magnitudes that are integer multiples of
    q = ulp(S) for a target sum S, so every partial sum is exact whatever order the reduction takes,
    and the recomputed gamma is fl(S / count). S is searched among the floats next to gamma * count
    (the original weights prove one works), every group at once; magnitudes stay near gamma / (non-zero
    share), so the codes round back to themselves. A group without a non-zero code spreads over all
    of its weights (its gamma is then below the rounding threshold, or the search fails loudly).
    """
    if codes.numel() == 0:
        return weight
    groups = codes.reshape(1, -1) if not per_row else codes
    targets = gamma[:1] if not per_row else gamma
    carriers = groups != 0
    carriers[~carriers.any(dim=1)] = True
    n_carriers = carriers.sum(dim=1, keepdim=True).double()
    centre = (targets.double() * groups.shape[1]).float().reshape(-1, 1)
    signs = torch.where(groups < 0, -1.0, 1.0)
    rank = carriers.cumsum(dim=1).double()  # 1-based position of each carrier within its group
    pending = torch.ones(groups.shape[0], dtype=torch.bool)
    result = torch.zeros_like(groups)
    for total in _alternating(centre):
        quantum = (torch.nextafter(total, torch.full_like(total, math.inf)) - total).double()
        units = torch.round(total.double() / quantum)
        base, extra = torch.div(units, n_carriers, rounding_mode="floor"), torch.remainder(units, n_carriers)
        candidate = (signs * (base + (rank <= extra).double()) * quantum * carriers).float()
        result[pending] = candidate[pending]
        weight[~mask] = result.reshape(codes.shape)
        recomputed = ternary_gamma(weight, mask, per_row)
        row_gamma = recomputed[~mask] if per_row else recomputed
        back = ternary_codes(weight[~mask], row_gamma).reshape(groups.shape)
        pending &= ~((row_gamma.reshape(-1) == targets) & (back == groups).all(dim=1))
        if not bool(pending.any()):
            return weight
    raise PackingError(f"cannot restore gamma={targets[pending][:3].tolist()!r} exactly from its codes")


def _alternating(centre: torch.Tensor) -> Iterator[torch.Tensor]:
    """``centre``, then the floats one step below and above it, two steps, ... up to _MAX_NUDGES."""
    yield centre
    down = up = centre
    for _ in range(_MAX_NUDGES):
        down = torch.nextafter(down, torch.full_like(down, -math.inf))
        up = torch.nextafter(up, torch.full_like(up, math.inf))
        yield down
        yield up


def unpack_model(packed: PackedModel) -> BitZeroLM:
    """A BitZeroLM (eval mode) whose forward is bit-identical to the model that was packed."""
    config = ModelConfig.from_dict(packed.config)
    model = BitZeroLM(config)
    state = {k: torch.from_numpy(np.array(v)) for k, v in packed.dense.items() if k not in ROTARY_TABLES}
    for name, layer in packed.linears.items():
        mask = torch.from_numpy(layer.critical_mask.copy())
        weight = torch.zeros(layer.out_features, layer.in_features)
        weight[mask] = torch.from_numpy(np.array(layer.critical_weight))
        codes = torch.from_numpy(layer.ternary().astype(np.float32))
        gamma = torch.from_numpy(layer.gamma.copy())
        state[f"{name}.weight"] = _latent_weight(weight, mask, codes, gamma, config.per_row_scale)
        state[f"{name}.critical_mask"] = mask
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise PackingError(f"packed tensors do not match the model config: {exc}") from exc
    return model.eval()
