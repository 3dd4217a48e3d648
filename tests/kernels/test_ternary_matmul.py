"""Our TernaryMatMul kernel, exact against a numpy reference (BitLinear's int8 quantization, integer
accumulation) on random ternary matrices of every shape SmolLM2-135M's student uses, odd K included,
at each instruction set this CPU has."""

from __future__ import annotations

import ctypes
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitzero.export.packing import kernel_codes
from bitzero.kernels import DOMAIN, library_path, register

LIBRARY = library_path()
pytestmark = pytest.mark.skipif(
    LIBRARY is None, reason="the kernel library is not built (make setup builds it: python -m bitzero.kernels.build)")
ISAS = ("scalar", "avx2", "avxvnni", "avx512vnni")
# (K, ternary rows, critical rows): SmolLM2-135M's qkv (576 -> 576 + 2 * 192), o_proj, gate+up
# (576 -> 2 * 1536), down_proj (1536 -> 576) at ~10% critical rows, and odd K.
SHAPES = [(576, 864, 96), (576, 518, 58), (576, 2765, 307), (1536, 518, 58), (577, 40, 5), (100, 33, 0), (3, 5, 1)]


def supported(isa: str) -> bool:
    """Whether this CPU runs ``isa`` (asked of the library itself, as the kernel decides)."""
    assert LIBRARY is not None
    library = ctypes.CDLL(str(LIBRARY))
    library.BitZeroTernaryIsa.restype = ctypes.c_char_p
    before = os.environ.get("BITZERO_TERNARY_ISA")
    os.environ["BITZERO_TERNARY_ISA"] = isa
    try:
        return bool(library.BitZeroTernaryIsa())
    finally:
        os.environ.pop("BITZERO_TERNARY_ISA")
        if before is not None:
            os.environ["BITZERO_TERNARY_ISA"] = before


def quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BitLinear's per-token int8 activations: the integers and each token's scale s."""
    scale = np.float32(127.0) / np.maximum(np.abs(x).max(-1, keepdims=True), np.float32(1e-5))
    return np.clip(np.round(x * scale), -128, 127).astype(np.int32), scale.astype(np.float32)


def reference(x: np.ndarray, codes: np.ndarray, gamma: np.ndarray, critical: np.ndarray, columns: np.ndarray) -> np.ndarray:
    q, scale = quantize(x)
    ternary = (q.astype(np.int64) @ codes.T.astype(np.int64)).astype(np.float32) * gamma / scale
    full = (q.astype(np.float64) @ critical.astype(np.float64).T / scale).astype(np.float32)
    out = np.empty((*x.shape[:-1], len(columns)), dtype=np.float32)
    out[..., columns] = np.concatenate([ternary, full], axis=-1)
    return out


def one_node(node: onnx.NodeProto, initializers: dict[str, np.ndarray], threads: int = 1,
             fed: tuple[str, ...] = ()) -> ort.InferenceSession:
    """A session of ``node`` alone (our kernels registered): float input "x" and the int32 inputs
    ``fed`` are fed, the rest of its inputs are ``initializers``, its output is "y"."""
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)]
    graph_inputs += [helper.make_tensor_value_info(name, TensorProto.INT32, None) for name in fed]
    graph = helper.make_graph([node], "t", graph_inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(value, name) for name, value in initializers.items()])
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid(DOMAIN, 1), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    assert register(options)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def session(codes: np.ndarray, gamma: np.ndarray, critical: np.ndarray, columns: np.ndarray, threads: int = 1,
            gated: int = 0, fed_columns: bool = False) -> ort.InferenceSession:
    """One TernaryMatMul node; ``fed_columns``: the columns are a graph input, not an initializer."""
    inits = {"codes": kernel_codes(codes), "gamma": gamma}
    inputs = ["x", "codes", "gamma"]
    if len(critical):
        inits["critical"] = critical
        if not fed_columns:
            inits["columns"] = columns
        inputs += ["critical", "columns"]
    node = helper.make_node("TernaryMatMul", inputs, ["y"], domain=DOMAIN, **({"gated": gated} if gated else {}))
    return one_node(node, inits, threads, ("columns",) if fed_columns and len(critical) else ())


def problem(k: int, n_ternary: int, n_critical: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(-1, 2, size=(n_ternary, k)).astype(np.int8)
    gamma = rng.uniform(0.01, 0.1, size=n_ternary).astype(np.float32)
    critical = (rng.normal(size=(n_critical, k)) * 0.05).astype(np.float16)
    columns = rng.permutation(n_ternary + n_critical).astype(np.int32) if n_critical else np.arange(n_ternary, dtype=np.int32)
    return codes, gamma, critical, columns


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(("k", "n_ternary", "n_critical"), SHAPES)
def test_the_kernel_is_exact_against_integer_arithmetic(monkeypatch: pytest.MonkeyPatch, isa: str, k: int,
                                                        n_ternary: int, n_critical: int) -> None:
    if not supported(isa):
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("BITZERO_TERNARY_ISA", isa)
    codes, gamma, critical, columns = problem(k, n_ternary, n_critical, seed=k + n_ternary)
    run = session(codes, gamma, critical, columns, threads=2)
    rng = np.random.default_rng(k)
    for shape in ((1, 1, k), (1, 7, k), (3, 5, k)):  # decode, prefill, a batch of sequences
        x = (rng.normal(size=shape) * rng.uniform(0.1, 10, size=(*shape[:-1], 1))).astype(np.float32)
        x[..., 0] *= 20  # an activation outlier, as real models have
        got = run.run(None, {"x": x})[0]
        want = reference(x, codes, gamma, critical.astype(np.float32), columns)
        assert got.shape == (*shape[:-1], n_ternary + n_critical)
        ternary = columns[:n_ternary]
        np.testing.assert_array_equal(got[..., ternary], want[..., ternary])  # integers: bit for bit
        np.testing.assert_allclose(got[..., columns[n_ternary:]], want[..., columns[n_ternary:]], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(("k", "n_ternary", "n_critical"), [(576, 518, 58), (1536, 40, 9), (200, 9, 3), (100, 9, 3)])
def test_a_token_gets_the_same_floats_whatever_it_is_computed_with(monkeypatch: pytest.MonkeyPatch, isa: str, k: int,
                                                                   n_ternary: int, n_critical: int) -> None:
    """A prompt run in pieces (a cached prefix, then the rest) or a reply decoded in a batch must get
    the outputs it gets alone, bit for bit: the next layer rounds them to int8, where one ulp can flip
    a step and the reply with it."""
    if not supported(isa):
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("BITZERO_TERNARY_ISA", isa)
    run = session(*problem(k, n_ternary, n_critical, seed=k + 1))
    x = (np.random.default_rng(k).normal(size=(1, 11, k)) * 3).astype(np.float32)  # two groups of four, then three
    together = run.run(None, {"x": x})[0]
    for start, stop in [(0, 1), (1, 6), (6, 11)]:
        np.testing.assert_array_equal(run.run(None, {"x": x[:, start:stop]})[0], together[:, start:stop])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(("k", "n_ternary", "n_critical"), [(1536, 518, 58), (100, 9, 2)])
def test_a_gated_input_is_swiglu_of_its_halves(monkeypatch: pytest.MonkeyPatch, isa: str, k: int, n_ternary: int,
                                               n_critical: int) -> None:
    if not supported(isa):
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("BITZERO_TERNARY_ISA", isa)
    codes, gamma, critical, columns = problem(k, n_ternary, n_critical, seed=k)
    x = (np.random.default_rng(k).normal(size=(2, 3, 2 * k)) * 3).astype(np.float32)
    gate, up = x[..., :k], x[..., k:]
    hidden = (gate / (1 + np.exp(-gate)) * up).astype(np.float32)  # silu(gate) * up, as PyTorch
    got = session(codes, gamma, critical, columns, gated=1).run(None, {"x": x})[0]
    want = reference(hidden, codes, gamma, critical.astype(np.float32), columns)
    # exp differs from numpy's by an ulp or so: an int8 activation on a .5 edge may flip, nothing more.
    assert np.linalg.norm(got - want) <= 1e-3 * np.linalg.norm(want)


def test_activations_on_a_rounding_edge_quantize_as_bitlinear() -> None:
    codes, gamma, critical, columns = problem(8, 3, 0, seed=1)
    x = np.array([[[127.0, 0.5, -0.5, 1.5, -127.0, 2.5, 0.0, -1.5]]], dtype=np.float32)  # scale 1: halves to even
    got = session(codes, gamma, critical, columns).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, reference(x, codes, gamma, critical, columns))


def test_bad_shapes_are_refused_with_a_clear_message() -> None:
    codes, gamma, critical, columns = problem(64, 4, 0, seed=2)
    run = session(codes, gamma, critical, columns)
    with pytest.raises(Exception, match="codes must be"):
        run.run(None, {"x": np.ones((1, 1, 200), dtype=np.float32)})  # K 64 -> 200: two blocks, not one


def test_columns_that_are_not_a_permutation_are_refused() -> None:
    """An exported graph's columns (an initializer) are checked once, when the session loads; columns
    fed at run time on every call. Two rows written to one column would leave another unwritten."""
    codes, gamma, critical, columns = problem(64, 6, 2, seed=4)
    x = np.random.default_rng(4).normal(size=(1, 2, 64)).astype(np.float32)
    fed = session(codes, gamma, critical, columns, fed_columns=True)
    np.testing.assert_allclose(fed.run(None, {"x": x, "columns": columns})[0],
                               reference(x, codes, gamma, critical.astype(np.float32), columns), rtol=1e-4, atol=1e-5)
    columns[1] = columns[0]
    with pytest.raises(Exception, match="permutation"):
        session(codes, gamma, critical, columns)
    with pytest.raises(Exception, match="permutation"):
        fed.run(None, {"x": x, "columns": columns})


def test_an_instruction_set_the_cpu_lacks_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = next((isa for isa in ISAS if not supported(isa)), None)
    if missing is None:
        pytest.skip("this CPU has every instruction set")
    monkeypatch.setenv("BITZERO_TERNARY_ISA", missing)
    with pytest.raises(Exception, match="lacks"):
        session(*problem(64, 4, 0, seed=3))
