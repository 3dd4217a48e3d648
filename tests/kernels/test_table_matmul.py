"""Our TableMatMul kernel (an int8 table with a scale a row, the student's lm_head, times float
activations) against float64 arithmetic, at every instruction set this CPU has: SmolLM2's table
shape, odd K, one token or many, the same floats for a token alone or in a batch."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from bitzero.kernels import DOMAIN
from tests.kernels.test_ternary_matmul import ISAS, LIBRARY, one_node, supported

pytestmark = pytest.mark.skipif(LIBRARY is None, reason="the kernel library is not built (python -m bitzero.kernels.build)")


def session(codes: np.ndarray, scales: np.ndarray, threads: int = 1) -> ort.InferenceSession:
    node = helper.make_node("TableMatMul", ["x", "codes", "scales"], ["y"], domain=DOMAIN)
    return one_node(node, {"codes": codes, "scales": scales}, threads)


def table(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(-127, 128, size=(n, k)).astype(np.int8), rng.uniform(1e-4, 1e-3, size=n).astype(np.float32)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(("n", "k"), [(49152, 576), (1000, 577), (70, 37), (3, 5)])
def test_the_table_times_activations_matches_float64(monkeypatch: pytest.MonkeyPatch, isa: str, n: int, k: int) -> None:
    if not supported(isa):
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("BITZERO_TERNARY_ISA", isa)
    codes, scales = table(n, k, seed=n + k)
    run = session(codes, scales, threads=2)
    rng = np.random.default_rng(k)
    for shape in ((1, 1, k), (1, 7, k), (2, 5, k)):
        x = rng.normal(size=shape).astype(np.float32)
        x[..., 0] *= 30  # an outlier channel: the activations stay float, nothing is rounded away
        want = (x.astype(np.float64) @ codes.T.astype(np.float64)) * scales
        got = run.run(None, {"x": x})[0]
        assert got.shape == (*shape[:-1], n)
        # float32 sums of k products: each within a few ulp of the sum of magnitudes
        bound = 1e-5 * (np.abs(x).astype(np.float64) @ np.abs(codes.T).astype(np.float64)) * scales
        assert np.all(np.abs(got - want) <= bound)


@pytest.mark.parametrize("isa", ISAS)
def test_a_token_gets_the_same_logits_alone_or_in_a_batch(monkeypatch: pytest.MonkeyPatch, isa: str) -> None:
    if not supported(isa):
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("BITZERO_TERNARY_ISA", isa)
    run = session(*table(300, 576, seed=1))
    x = np.random.default_rng(2).normal(size=(11, 1, 576)).astype(np.float32)  # 11 rows of a batch: 4 + 4 + 3
    together = run.run(None, {"x": x})[0]
    for row in range(11):
        np.testing.assert_array_equal(run.run(None, {"x": x[row:row + 1]})[0], together[row:row + 1])


def test_bad_shapes_are_refused_with_a_clear_message() -> None:
    run = session(*table(8, 64, seed=3))
    with pytest.raises(Exception, match="TableMatMul: codes must be"):
        run.run(None, {"x": np.ones((1, 1, 65), dtype=np.float32)})
