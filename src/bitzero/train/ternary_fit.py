"""Ternary weights fitted to a layer's calibration inputs: the math of the conversion ladder.

A layer y = W x is replaced by alpha * T with codes T in {-1, 0, 1} and a scale alpha per tensor or
per output row. What matters is the error on real inputs, (W - Q) H (W - Q)^T with H = X^T X of
the calibration activations, not the plain weight error:

* ``fit_scales``: alpha by closed-form least squares, alternating with re-thresholding T at
  alpha / 2, each input column weighted by its activation energy diag(H) (PT^2-LLM's alternation);
* ``gptq_ternary``: GPTQ's column-by-column rounding; each column's rounding error is pushed onto
  the columns not yet rounded through the inverse Hessian, so the rows' outputs on calibration
  data are kept, then alpha is re-fitted in the H metric;
* ``row_saliency``: the activation-weighted error of each row, which picks the critical
  (full-precision) rows.

``latent_weights`` writes (T, alpha) back as latent weights from which BitLinear's absmean rule
recomputes exactly that alpha and those codes, so the 2-bit export reads them unchanged.
"""

from __future__ import annotations

import torch

from bitzero.model.bitlinear import ternary_codes as codes_for
from bitzero.model.bitlinear import ternary_gamma

FIT_ITERATIONS = 8


def _scale_sum(values: torch.Tensor, per_row: bool) -> torch.Tensor:
    return values.sum(dim=1, keepdim=True) if per_row else values.sum()


def fit_scales(
    weight: torch.Tensor, column_energy: torch.Tensor, per_row: bool, iterations: int = FIT_ITERATIONS
) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, scales) minimising sum_j d_j (W_ij - alpha T_ij)^2, d = diag(H): alternate the
    least-squares alpha = sum d W T / sum d T^2 with re-thresholding T, from absmean."""
    scales = ternary_gamma(weight, per_row=per_row)
    d = column_energy.clamp(min=0).unsqueeze(0)
    codes = codes_for(weight, scales)
    for _ in range(iterations):
        numerator = _scale_sum(d * weight * codes, per_row)
        denominator = _scale_sum(d * codes * codes, per_row)
        scales = torch.where(denominator > 0, numerator / denominator.clamp(min=1e-12), scales)
        codes = codes_for(weight, scales)
    return codes, scales


def damped(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """H + damp * mean(diag H) * I, with dead inputs (zero energy) given a unit diagonal."""
    hessian = hessian.clone()
    diagonal = hessian.diagonal()
    diagonal[diagonal <= 0] = 1.0
    diagonal += damp * diagonal.mean()
    return hessian


def refit_scales(weight: torch.Tensor, codes: torch.Tensor, hessian: torch.Tensor, per_row: bool) -> torch.Tensor:
    """alpha = <W, T>_H / <T, T>_H: the best scale for fixed codes on the calibration inputs."""
    projected = codes @ hessian
    numerator = _scale_sum(weight * projected, per_row)
    denominator = _scale_sum(codes * projected, per_row)
    fallback = ternary_gamma(weight, per_row=per_row)
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-12), fallback)


def gptq_ternary(
    weight: torch.Tensor, hessian: torch.Tensor, scales: torch.Tensor, block: int = 128, damp: float = 0.01,
) -> torch.Tensor:
    """Ternary codes by GPTQ (Frantar et al. 2022) on the grid alpha * {-1, 0, 1}: columns in order,
    each column's error compensated on the later ones through the Cholesky factor of H^-1."""
    w = weight.detach().double().clone()
    h = damped(hessian.double(), damp)
    w[:, hessian.diagonal() <= 0] = 0.0
    upper = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    alpha = scales.double()
    codes = torch.zeros_like(w)
    columns = w.shape[1]
    for start in range(0, columns, block):
        end = min(start + block, columns)
        chunk = w[:, start:end].clone()
        errors = torch.zeros_like(chunk)
        factor = upper[start:end, start:end]
        for i in range(end - start):
            column = chunk[:, i : i + 1]
            code = codes_for(column, alpha)
            codes[:, start + i : start + i + 1] = code
            error = (column - code * alpha) / factor[i, i]
            chunk[:, i + 1 :] -= error * factor[i : i + 1, i + 1 :]
            errors[:, i : i + 1] = error
        w[:, end:] -= errors @ upper[start:end, end:]
    return codes.to(weight.dtype)


def row_saliency(weight: torch.Tensor, quantized: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """Per output row, (w - q) H (w - q)^T: its squared output error summed over calibration tokens."""
    error = weight - quantized
    return ((error @ hessian) * error).sum(dim=1)


def latent_weights(
    weight: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, critical: torch.Tensor, per_row: bool
) -> torch.Tensor:
    """Latent weights for BitLinear: critical rows keep ``weight``; ternary rows are T * alpha / nz
    (nz: the share of non-zero codes), whose mean |W| is alpha and which round back to T."""
    ternary = ~critical
    nonzero = (codes != 0).to(weight.dtype) * ternary.unsqueeze(1)
    if per_row:
        share = nonzero.mean(dim=1, keepdim=True)
    else:
        share = nonzero.sum() / (ternary.sum() * weight.shape[1]).clamp(min=1)
    spread = torch.where(share > 0, scales / share.clamp(min=1e-12), torch.zeros_like(share))
    return torch.where(critical.unsqueeze(1), weight, codes * spread)
