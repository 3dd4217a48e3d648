"""The conversion ladder: each rung lowers the error it is built to lower, the codes stay ternary,
BitLinear reads back exactly the fitted codes and scales, and the whole climb is deterministic."""

import pytest
import torch

from bitzero.model import BitLinear
from bitzero.model.pretrained import ternary_student
from bitzero.train import Example
from bitzero.train.conversion import ConversionError, LadderSettings, bits_per_weight, calibrate, convert
from bitzero.train.heldout import held_out_nll
from bitzero.train.ternary_fit import fit_scales, gptq_ternary, latent_weights, refit_scales, row_saliency
from tests.tiny import tiny_model


def _layer(per_row_spread: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights with rows of different sizes and inputs with correlated, uneven channels (as real
    activations: a few channels carry most of the energy)."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(48, 32, generator=g) * (torch.rand(48, 1, generator=g) * 2 + 0.2 if per_row_spread else 1)
    mixing = torch.randn(32, 32, generator=g) * 0.3 + torch.eye(32)
    inputs = torch.randn(512, 32, generator=g) @ mixing * (torch.rand(32, generator=g) * 4 + 0.1)
    return weight, inputs


def _output_error(weight: torch.Tensor, quantized: torch.Tensor, inputs: torch.Tensor) -> float:
    return float(((weight - quantized) @ inputs.T).pow(2).sum())


@pytest.mark.parametrize("per_row", [False, True])
def test_each_rung_lowers_its_error_on_a_layer(per_row):
    weight, inputs = _layer()
    hessian = inputs.T @ inputs
    energy = hessian.diagonal()
    absmean = weight.abs().mean(dim=1, keepdim=True) if per_row else weight.abs().mean()
    absmean_q = (weight / absmean).round().clamp(-1, 1) * absmean
    codes, scales = fit_scales(weight, energy, per_row)
    fitted_q = codes * scales

    def weighted(q: torch.Tensor) -> float:
        return float(((weight - q).pow(2) * energy).sum())

    assert weighted(fitted_q) < weighted(absmean_q)
    gptq_codes = gptq_ternary(weight, hessian, scales, block=8)
    gptq_q = gptq_codes * refit_scales(weight, gptq_codes, hessian, per_row)
    assert _output_error(weight, gptq_q, inputs) < _output_error(weight, fitted_q, inputs)
    for c in (codes, gptq_codes):
        assert set(c.unique().tolist()) <= {-1.0, 0.0, 1.0}
    # Critical rows by saliency remove more output error than the same number by weight error.
    saliency = row_saliency(weight, gptq_q, hessian)
    by_weight = (weight - gptq_q).pow(2).sum(dim=1).topk(5).indices
    by_saliency = saliency.topk(5).indices
    assert saliency.sum() == pytest.approx(_output_error(weight, gptq_q, inputs), rel=1e-4)
    assert saliency[by_saliency].sum() > saliency[by_weight].sum()


@pytest.mark.parametrize("per_row", [False, True])
def test_bitlinear_reads_back_the_fitted_codes_and_scales(per_row):
    weight, inputs = _layer()
    codes, scales = fit_scales(weight, (inputs.T @ inputs).diagonal(), per_row)
    critical = torch.zeros(48, dtype=torch.bool)
    critical[[3, 7]] = True
    layer = BitLinear(32, 48, critical_ratio=2 / 48, mask_frozen=True, per_row_scale=per_row)
    with torch.no_grad():
        layer.critical_mask.copy_(critical)
        layer.weight.copy_(latent_weights(weight, codes, scales, critical, per_row))
    read_codes, gamma = layer.ternary_codes()
    assert torch.equal(read_codes[~critical], codes[~critical])
    expected = scales[~critical] if per_row else scales
    assert torch.allclose(gamma[~critical] if per_row else gamma, expected, rtol=1e-5)
    effective = layer.effective_weight()
    assert torch.equal(effective[critical], weight[critical])


def _examples(vocab: int, count: int, seed: int) -> list[Example]:
    g = torch.Generator().manual_seed(seed)
    return [Example(torch.randint(0, vocab, (24,), generator=g).tolist(), [i % 3 != 0 for i in range(24)])
            for _ in range(count)]


def _climb(per_row: bool) -> tuple[list[dict], torch.nn.Module]:
    torch.manual_seed(0)
    teacher = tiny_model(quantized=False)
    calibration, heldout = _examples(teacher.config.vocab_size, 6, 1), _examples(teacher.config.vocab_size, 6, 2)
    student = ternary_student(teacher, critical_ratio=0.1, sub_norm=True, per_row_scale=per_row)

    def nll(model):
        return held_out_nll(model, {"heldout": heldout}, 8, 32)["overall"]

    return convert(student, calibration, nll, LadderSettings(seq_len=32, gptq_block=16)), student


@pytest.mark.parametrize("per_row", [False, True])
def test_the_ladder_keeps_only_rungs_that_help_and_is_deterministic(per_row):
    table, student = _climb(per_row)
    again, twin = _climb(per_row)
    untimed = [{k: v for k, v in row.items() if k != "minutes"} for row in table]
    assert untimed == [{k: v for k, v in row.items() if k != "minutes"} for row in again]
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), twin.state_dict().values(), strict=True))
    assert [row["rung"] for row in table] == ["absmean", "fitted_scales", "saliency", "gptq", "blockwise"]
    best = table[0]["held_out_nll"]
    for row in table[1:]:
        assert row["kept"] == (row["held_out_nll"] < best)
        best = min(best, row["held_out_nll"])
    assert held_out_nll(student, {"heldout": _examples(student.config.vocab_size, 6, 2)}, 8, 32)["overall"] \
        == pytest.approx(best, rel=1e-5)
    assert student.config.critical_mask_frozen
    for _, layer in student.bit_linears():
        codes, _ = layer.ternary_codes()
        assert set(codes.unique().tolist()) <= {-1.0, 0.0, 1.0}
        assert int(layer.critical_mask.sum()) == layer.n_critical
    assert 2.0 < bits_per_weight(student) == table[-1]["bits_per_weight"]


def test_calibration_shares_one_hessian_per_input_and_sets_sub_norm_gains():
    teacher = tiny_model(quantized=False)
    student = ternary_student(teacher, critical_ratio=0.0, sub_norm=True)
    hessians = calibrate(student, _examples(teacher.config.vocab_size, 3, 1), LadderSettings(seq_len=16))
    assert hessians["blocks.0.attn.q_proj"] is hessians["blocks.0.attn.v_proj"]
    assert hessians["blocks.0.ffn.gate_proj"] is hessians["blocks.0.ffn.up_proj"]
    assert torch.allclose(hessians["blocks.0.ffn.down_proj"], hessians["blocks.0.ffn.down_proj"].T)
    gain = student.blocks[0].attn.sub_norm.weight.detach()
    assert torch.all(gain == gain[0]) and float(gain[0]) != 1.0


def test_bad_settings_are_refused():
    with pytest.raises(ConversionError, match="rungs"):
        LadderSettings(rungs=["gptq"])
    with pytest.raises(ConversionError, match="context_weight"):
        LadderSettings(context_weight=2.0)
    with pytest.raises(ConversionError, match="calibration"):
        calibrate(ternary_student(tiny_model(quantized=False), 0.0), [], LadderSettings())
