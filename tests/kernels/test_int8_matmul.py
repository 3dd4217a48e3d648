"""Our Int8MatMul kernel (the teacher's 8-bit table as MatMulNBits stores it: codes + 128 in blocks of
32 with a float scale each, on int8 activations per block of 32) against float64 arithmetic on the
same int8 activations and against onnxruntime's MatMulNBits on the very same initializers, at every
instruction set this CPU has; the same floats for a token alone or in a batch."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from bitzero.export.packing import quantize_table
from bitzero.kernels import DOMAIN
from tests.kernels.test_int4_matmul import blocks_of
from tests.kernels.test_ternary_matmul import ISAS, LIBRARY, one_node, supported

pytestmark = pytest.mark.skipif(LIBRARY is None, reason="the kernel library is not built (python -m bitzero.kernels.build)")


def session(codes: np.ndarray, scales: np.ndarray, k: int, threads: int = 1, op: str = "Int8MatMul") -> ort.InferenceSession:
    """One Int8MatMul node, or (``op="MatMulNBits"``) the node the int4 graph used before it."""
    if op == "MatMulNBits":
        node = helper.make_node(op, ["x", "codes", "scales"], ["y"], domain="com.microsoft", K=k, N=codes.shape[0],
                                bits=8, block_size=32, accuracy_level=4)
    else:
        node = helper.make_node(op, ["x", "codes", "scales"], ["y"], domain=DOMAIN)
    return one_node(node, {"codes": codes, "scales": scales}, threads)


def table(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit table of an embedding-like matrix: codes (n, blocks, 32) and scales (n, blocks)."""
    weight = quantize_table((np.random.default_rng(seed).normal(size=(n, k)) * 0.05).astype(np.float32), 8)
    return weight.codes, weight.scales


def reference(x: np.ndarray, codes: np.ndarray, scales: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The sums in float64 over the same int8 activations, and each output's scale of rounding."""
    _, q, qscale = (a.astype(np.float64) for a in blocks_of(x, k))
    weights = (codes.astype(np.float64) - 128) * scales[..., None].astype(np.float64)  # (n, blocks, 32)
    terms = q * qscale
    return np.einsum("...bj,nbj->...n", terms, weights), np.einsum("...bj,nbj->...n", np.abs(terms), np.abs(weights))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(("n", "k"), [(3000, 576), (70, 37), (17, 96), (5, 20)])
def test_the_kernel_computes_the_8bit_blocks_sums(monkeypatch: pytest.MonkeyPatch, isa: str, n: int, k: int) -> None:
    if not supported(isa):
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("BITZERO_TERNARY_ISA", isa)
    codes, scales = table(n, k, seed=n + k)
    run = session(codes, scales, k, threads=2)
    rng = np.random.default_rng(k)
    for shape in ((1, 1, k), (1, 7, k), (2, 5, k)):
        x = rng.normal(size=shape).astype(np.float32)
        x[..., 3 % k] *= 30  # an outlier channel
        want, magnitude = reference(x, codes, scales, k)
        got = run.run(None, {"x": x})[0]
        assert got.shape == (*shape[:-1], n)
        assert np.all(np.abs(got - want) <= 1e-5 * magnitude)  # float32 sums: a few ulp of their magnitudes


def test_it_computes_what_matmulnbits_computed_on_the_same_initializers() -> None:
    """The int4 graph's lm_head moved from MatMulNBits bits=8 (accuracy_level 4) to this op, reading
    the same codes and scales: the same int8 activations, so only float summation order may differ."""
    k = 576
    codes, scales = table(2000, k, seed=7)
    x = (np.random.default_rng(7).normal(size=(1, 5, k)) * 2).astype(np.float32)
    _, magnitude = reference(x, codes, scales, k)
    ours = session(codes, scales, k).run(None, {"x": x})[0]
    theirs = session(codes, scales, k, op="MatMulNBits").run(None, {"x": x})[0]
    assert np.all(np.abs(ours - theirs) <= 1e-5 * magnitude)


@pytest.mark.parametrize("isa", ISAS)
def test_a_token_gets_the_same_logits_alone_or_in_a_batch(monkeypatch: pytest.MonkeyPatch, isa: str) -> None:
    if not supported(isa):
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("BITZERO_TERNARY_ISA", isa)
    codes, scales = table(300, 576, seed=1)
    run = session(codes, scales, 576)
    x = np.random.default_rng(1).normal(size=(1, 11, 576)).astype(np.float32)  # two groups of four, then three
    together = run.run(None, {"x": x})[0]
    for start, stop in [(0, 1), (1, 6), (6, 11)]:
        np.testing.assert_array_equal(run.run(None, {"x": x[:, start:stop]})[0], together[:, start:stop])


def test_bad_shapes_are_refused_with_a_clear_message() -> None:
    codes, scales = table(8, 64, seed=2)
    run = session(codes, scales, 64)
    with pytest.raises(Exception, match="codes must be"):
        run.run(None, {"x": np.ones((1, 1, 100), dtype=np.float32)})
