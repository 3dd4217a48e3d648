"""Our Int4MatMul kernel (the teacher's GGUF Q4_1 blocks: 4-bit codes with an fp16 scale and min a
block of 32, on int8 activations per block) against float64 arithmetic on the same int8 activations,
at every instruction set this CPU has: SmolLM2's projection shapes, odd K and N, one token or many,
the same floats for a token alone or in a batch."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from bitzero.export.packing import Int4Weight, quantize_int4
from bitzero.kernels import DOMAIN
from tests.export.test_packing import q4_1_weight
from tests.kernels.test_ternary_matmul import ISAS, LIBRARY, one_node, supported

pytestmark = pytest.mark.skipif(LIBRARY is None, reason="the kernel library is not built (python -m bitzero.kernels.build)")


def session(weight: Int4Weight, threads: int = 1, gated: int = 0) -> ort.InferenceSession:
    codes, scales, mins = weight.kernel_blocks()
    node = helper.make_node("Int4MatMul", ["x", "codes", "scales", "mins"], ["y"], domain=DOMAIN, **({"gated": gated} if gated else {}))
    return one_node(node, {"codes": codes, "scales": scales, "mins": mins}, threads)


def blocks_of(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (..., K) as (..., blocks, 32) floats (zero past K), its int8 codes per block (absmax / 127,
    half to even, in float32 as the kernel) and their scales."""
    padded = np.zeros((*x.shape[:-1], -(-k // 32) * 32), dtype=np.float32)
    padded[..., :k] = x
    grouped = padded.reshape(*x.shape[:-1], -1, 32)
    amax = np.abs(grouped).max(-1, keepdims=True)
    factor = np.where(amax > 0, np.float32(127.0) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
    return grouped, np.round(grouped * factor), amax / np.float32(127.0)


def reference(x: np.ndarray, weight: Int4Weight) -> tuple[np.ndarray, np.ndarray]:
    """What the int4 graph computes, in float64: the int8 activations times the centred codes,
    s (q - 8), plus the float block sums times the rest, min + 8 s; and each output's scale of
    rounding (the sum of its terms' magnitudes)."""
    n, blocks, _ = weight.blob.shape
    grouped, q, qscale = (a.astype(np.float64) for a in blocks_of(x, weight.in_features))
    scales, mins = weight.scales.astype(np.float64), (-weight.zero_points * weight.scales).astype(np.float64)
    codes = np.stack([weight.blob & 0x0F, weight.blob >> 4], axis=-1).reshape(n, blocks, 32).astype(np.float64)  # low nibble first
    centred = (codes - 8) * scales[..., None]  # (n, blocks, 32)
    dots = np.einsum("...bj,nbj->...nb", q * qscale, centred)
    rest = grouped.sum(-1) @ (mins + 8 * scales).T
    magnitude = np.einsum("...bj,nbj->...n", np.abs(q * qscale), np.abs(centred)) + np.abs(grouped).sum(-1) @ np.abs(mins + 8 * scales).T
    return dots.sum(-1) + rest, magnitude


SHAPES = [(960, 576), (3072, 576), (576, 1536), (33, 70), (17, 96), (5, 20)]  # SmolLM2's; odd N and K, a padded pair, K < 32


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_the_kernel_computes_the_int4_graphs_sums(monkeypatch: pytest.MonkeyPatch, isa: str, n: int, k: int) -> None:
    if not supported(isa):
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("BITZERO_TERNARY_ISA", isa)
    rng = np.random.default_rng(n + k)
    weight = quantize_int4(q4_1_weight(rng, n, k))
    run = session(weight, threads=2)
    for shape in ((1, 1, k), (1, 7, k), (2, 5, k)):
        x = rng.normal(size=shape).astype(np.float32)
        x[..., 3 % k] *= 30  # an outlier channel, as SmolLM2's: its block's other activations lose precision
        want, magnitude = reference(x, weight)
        got = run.run(None, {"x": x})[0]
        assert got.shape == (*shape[:-1], n)
        # float32 sums: each within a few ulp of the sum of its terms' magnitudes
        assert np.all(np.abs(got - want) <= 1e-5 * magnitude)
        # ...a bound that catches activations left in float (what the int8 rounding changes)
        unrounded = x.astype(np.float64) @ weight.dense().T.astype(np.float64)
        assert np.any(np.abs(got - unrounded) > 1e-5 * magnitude)


@pytest.mark.parametrize("isa", ISAS)
def test_a_token_gets_the_same_floats_alone_or_in_a_batch(monkeypatch: pytest.MonkeyPatch, isa: str) -> None:
    if not supported(isa):
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("BITZERO_TERNARY_ISA", isa)
    rng = np.random.default_rng(4)
    run = session(quantize_int4(q4_1_weight(rng, 300, 576)))
    x = rng.normal(size=(11, 1, 576)).astype(np.float32)  # 11 rows of a batch: 4 + 4 + 3
    together = run.run(None, {"x": x})[0]
    prompt = run.run(None, {"x": x.reshape(1, 11, 576)})[0].reshape(11, 1, -1)
    for row in range(11):
        alone = run.run(None, {"x": x[row:row + 1]})[0]
        np.testing.assert_array_equal(alone, together[row:row + 1])
        np.testing.assert_array_equal(alone, prompt[row:row + 1])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(("n", "k"), [(576, 1536), (17, 96)])
def test_a_gated_input_is_swiglu_of_its_halves(monkeypatch: pytest.MonkeyPatch, isa: str, n: int, k: int) -> None:
    """The teacher's down_proj reads silu(gate) * up of its input's halves, as the Split, Sigmoid and
    Muls it replaces: within the rounding of an int8 activation that an ulp of exp may flip."""
    if not supported(isa):
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("BITZERO_TERNARY_ISA", isa)
    rng = np.random.default_rng(n + k)
    weight = quantize_int4(q4_1_weight(rng, n, k))
    x = (rng.normal(size=(2, 3, 2 * k)) * 3).astype(np.float32)
    gate, up = x[..., :k], x[..., k:]
    hidden = (gate / (1 + np.exp(-gate)) * up).astype(np.float32)  # silu(gate) * up, as PyTorch
    got = session(weight, gated=1).run(None, {"x": x})[0]
    want, _ = reference(hidden, weight)
    assert got.shape == (2, 3, n)
    assert np.linalg.norm(got - want) <= 1e-3 * np.linalg.norm(want)
    with pytest.raises(Exception, match="two halves"):
        session(weight, gated=1).run(None, {"x": x[..., 1:]})


def test_bad_shapes_are_refused_with_a_clear_message() -> None:
    run = session(quantize_int4(np.ones((8, 64), dtype=np.float32)))
    with pytest.raises(Exception, match="Int4MatMul: codes must be"):
        run.run(None, {"x": np.ones((1, 1, 130), dtype=np.float32)})
