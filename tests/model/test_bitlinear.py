"""BitLinear against the b1.58 formulas on hand-made tensors, the STE, and the weight cache."""

import pytest
import torch

from bitzero.model.bitlinear import (
    BitLinear,
    adaptive_critical_ratio,
    block_critical_ratio,
    quantize_activations,
    quantize_weights,
)


def test_activation_quantization_matches_the_formula():
    x = torch.tensor([[1.0, -0.5, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0], [-2.0, 0.01, 1.0, 0.5]])
    expected = torch.tensor(
        [
            # s = 127 / 1: 127, -63.5 -> -64 (round half to even), 31.75 -> 32, 0
            [127 / 127, -64 / 127, 32 / 127, 0.0],
            # max|x| = 0 is clamped to 1e-5: stays exactly zero, no NaN
            [0.0, 0.0, 0.0, 0.0],
            # s = 127 / 2: -127, 0.635 -> 1, 63.5 -> 64, 31.75 -> 32
            [-2.0, 1 * 2 / 127, 64 * 2 / 127, 32 * 2 / 127],
        ]
    )
    torch.testing.assert_close(quantize_activations(x), expected, rtol=0, atol=1e-7)


def test_weight_quantization_matches_the_formula():
    w = torch.tensor([[0.4, -0.1, 0.0, 0.2], [-0.3, 0.05, 0.6, -0.05]])
    gamma = 1.7 / 8  # mean |W|
    codes = torch.tensor([[1.0, 0.0, 0.0, 1.0], [-1.0, 0.0, 1.0, 0.0]])
    torch.testing.assert_close(quantize_weights(w), codes * gamma)


def test_critical_rows_keep_full_precision_and_gamma_skips_them():
    w = torch.tensor([[0.4, -0.1, 0.0, 0.2], [-0.3, 0.05, 0.6, -0.05]])
    mask = torch.tensor([False, True])
    gamma = 0.7 / 4  # mean |W| over row 0 only
    expected = torch.stack([torch.tensor([1.0, -1.0, 0.0, 1.0]) * gamma, w[1]])
    torch.testing.assert_close(quantize_weights(w, mask), expected)


def test_critical_channels_are_the_rows_ternary_rounding_hurts_most():
    layer = BitLinear(4, 10, critical_ratio=0.2)
    with torch.no_grad():
        layer.weight.fill_(0.01)
        layer.weight[3] = torch.tensor([1.0, 0.02, -0.5, 0.3])  # outliers: far from any ternary value
        layer.weight[7] = torch.tensor([-2.0, 0.7, 0.01, 1.3])
        layer.weight[5] = 0.02  # large but uniform: rounds almost exactly
    layer(torch.randn(2, 4))
    assert layer.critical_mask.nonzero().flatten().tolist() == [3, 7]


def test_straight_through_gradients_reach_latent_weights_and_inputs():
    torch.manual_seed(0)
    layer = BitLinear(8, 6, critical_ratio=0.0)
    x = torch.randn(3, 8, requires_grad=True)
    layer(x).sum().backward()
    w_eff = quantize_weights(layer.weight.detach())
    # Identity backward through both quantizers: the gradients of a plain linear on (x_q, W_q).
    torch.testing.assert_close(x.grad, torch.ones(3, 6) @ w_eff)
    torch.testing.assert_close(layer.weight.grad, torch.ones(6, 3) @ quantize_activations(x.detach()))
    assert layer.weight.grad.abs().sum() > 0 and x.grad.abs().sum() > 0


def test_adaptive_ratio_follows_the_recipe():
    assert [adaptive_critical_ratio(i, 6) for i in range(6)] == [0.15, 0.12, 0.08, 0.08, 0.08, 0.15]
    assert block_critical_ratio(0.05, 3, 6) == 0.05
    with pytest.raises(ValueError):
        block_critical_ratio("sometimes", 0, 6)
    with pytest.raises(ValueError):
        block_critical_ratio(1.5, 0, 6)


def _eval_layer() -> tuple[BitLinear, torch.Tensor]:
    torch.manual_seed(0)
    layer = BitLinear(8, 8, critical_ratio=0.25).eval()
    return layer, torch.randn(2, 8)


def test_eval_computes_quantized_weights_once():
    layer, x = _eval_layer()
    first = layer(x)
    cached = layer._cache
    assert cached is not None
    torch.testing.assert_close(layer(x), first)
    assert layer._cache is cached


def test_cache_dropped_by_train_mode():
    layer, x = _eval_layer()
    layer(x)
    layer.train()
    assert not layer.has_cache


def test_cache_refreshed_after_optimizer_step():
    layer, x = _eval_layer()
    before = layer(x).detach()
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.5)
    layer.train()
    layer(x).square().sum().backward()
    layer.eval()
    layer(x)  # fills the cache in eval mode
    optimizer.step()  # changes the weights while in eval
    after = layer(x)
    w_eff = quantize_weights(layer.weight.detach(), layer.critical_mask)
    fresh = torch.nn.functional.linear(quantize_activations(x), w_eff)
    torch.testing.assert_close(after, fresh)
    assert not torch.allclose(after, before)


def test_cache_dropped_by_load_state_dict():
    layer, x = _eval_layer()
    layer(x)
    other = BitLinear(8, 8, critical_ratio=0.25)
    torch.nn.init.normal_(other.weight, std=1.0)
    other.eval()
    expected = other(x)
    layer.load_state_dict(other.state_dict())
    assert not layer.has_cache
    torch.testing.assert_close(layer(x), expected)
    assert torch.equal(layer.critical_mask, other.critical_mask)


def test_a_frozen_mask_survives_training_while_a_live_one_follows_the_weights():
    torch.manual_seed(0)
    live, frozen = BitLinear(16, 8, critical_ratio=0.25), BitLinear(16, 8, critical_ratio=0.25)
    frozen.load_state_dict(live.state_dict())
    frozen.freeze_mask()
    chosen = frozen.critical_mask.clone()
    with torch.no_grad():  # the smallest rows become the largest
        for layer in (live, frozen):
            layer.weight.mul_(1.0 / layer.weight.norm(dim=1, keepdim=True) ** 2)
    x = torch.randn(3, 16)
    live.train()(x)
    frozen.train()(x)
    assert not torch.equal(live.critical_mask, chosen), "a live mask follows the weights"
    assert torch.equal(frozen.critical_mask, chosen)
