"""PyTorch model <-> packed model. Kept apart from the torch-free modules that serve.

Loading back is bit-exact: BitLinear recomputes gamma = mean|W| from whatever latent weights it
holds, so the ternary rows are restored as codes * a, with ``a`` chosen so that this recomputation
gives back the stored gamma exactly (and the codes round back to themselves). The effective
weights, and so every forward, are then identical to the exported model's.
"""

from __future__ import annotations

import math

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
        weight = layer.weight.detach().float().cpu().numpy()
        linears[name] = PackedLinear(
            in_features=layer.in_features,
            critical_mask=mask,
            codes=pack_codes(codes.cpu().numpy()[~mask]),
            gamma=float(gamma),
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


def _latent_weight(weight: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor, gamma: float) -> torch.Tensor:
    """Latent ternary rows whose recomputed gamma = mean|W| is the stored gamma, bit for bit.

    Every magnitude is an integer multiple of q = ulp(S) for a target sum S, so every partial
    sum is exact whatever order the reduction takes, and the recomputed gamma is fl(S / count).
    S is searched among the floats next to gamma * count (the original weights prove one
    works); magnitudes stay near gamma / (non-zero share), so the codes round back to themselves.
    """
    target = torch.tensor(gamma, dtype=torch.float32)
    nonzero = codes != 0
    n_nonzero = int(nonzero.sum())
    if n_nonzero == 0:
        weight[~mask] = 0.0
        return weight
    centre = torch.tensor(gamma * codes.numel(), dtype=torch.float32)
    candidates, down, up = [centre], centre, centre
    for _ in range(_MAX_NUDGES):
        down = torch.nextafter(down, torch.tensor(-math.inf))
        up = torch.nextafter(up, torch.tensor(math.inf))
        candidates += [down, up]
    for total in candidates:
        quantum = float(torch.nextafter(total, torch.tensor(math.inf)) - total)
        units = round(float(total) / quantum)
        base, extra = divmod(units, n_nonzero)
        magnitudes = torch.full((n_nonzero,), float(base))
        magnitudes[:extra] += 1.0
        spread = torch.zeros_like(codes)
        spread[nonzero] = magnitudes * quantum
        weight[~mask] = codes * spread
        if torch.equal(ternary_gamma(weight, mask), target) and torch.equal(
            ternary_codes(weight[~mask], target), codes
        ):
            return weight
    raise PackingError(f"cannot restore gamma={gamma!r} exactly from its codes")


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
        state[f"{name}.weight"] = _latent_weight(weight, mask, codes, layer.gamma)
        state[f"{name}.critical_mask"] = mask
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise PackingError(f"packed tensors do not match the model config: {exc}") from exc
    return model.eval()
