"""2-bit packing and the compact checkpoint (lossless for codes, bit-exact for the model), and the
4-bit block format as onnxruntime's MatMulNBits reads it."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from bitzero.export.convert import pack_model, unpack_model
from bitzero.export.packing import (
    PackingError,
    kernel_codes,
    load_packed,
    pack_codes,
    quantize_int4,
    save_packed,
    unpack_codes,
)
from tests.export.conftest import tiny_student


@pytest.mark.parametrize("in_features", [1, 4, 7, 64, 130])
def test_codes_round_trip_at_four_per_byte(in_features: int) -> None:
    codes = np.random.default_rng(in_features).integers(-1, 2, size=(5, in_features)).astype(np.int8)
    packed = pack_codes(codes)
    assert packed.dtype == np.uint8 and packed.shape == (5, -(-in_features // 4))
    assert np.array_equal(unpack_codes(packed, in_features), codes)


def test_layout_is_matmulnbits_two_bit_with_zero_point_two() -> None:
    # codes -1, 0, 1, 1 -> stored 1, 2, 3, 3, first code in the lowest bits
    assert pack_codes(np.array([[-1, 0, 1, 1]]))[0, 0] == 1 | 2 << 2 | 3 << 4 | 3 << 6


def test_non_ternary_codes_and_corrupt_bytes_are_refused() -> None:
    with pytest.raises(PackingError, match="-1, 0 or"):
        pack_codes(np.array([[0, 2]]))
    with pytest.raises(PackingError, match="corrupt"):
        unpack_codes(np.array([[0]], dtype=np.uint8), 4)


@pytest.mark.parametrize(("overrides", "seed"), [({}, 1), ({"sub_norm": True, "tie_embeddings": False}, 2),
                                               ({"per_row_scale": True}, 3)])
def test_packed_checkpoint_loads_back_bit_exactly(tmp_path: Path, overrides: dict, seed: int) -> None:
    model = tiny_student(seed, **overrides)
    path = save_packed(pack_model(model), tmp_path / "model.packed.safetensors")
    restored = unpack_model(load_packed(path))
    ids = torch.randint(0, model.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        assert torch.equal(model(ids)[0], restored(ids)[0])
    for (name, layer), (_, back) in zip(model.bit_linears(), restored.bit_linears(), strict=True):
        assert torch.equal(layer.effective_weight(), back.effective_weight()), name
        assert torch.equal(layer.critical_mask, back.critical_mask), name


def test_sizes_count_two_bit_codes_and_a_scale_a_row(student: torch.nn.Module) -> None:
    model = student
    packed = pack_model(model)
    sizes = packed.sizes()
    rows = sum(layer.codes.shape[0] for layer in packed.linears.values())
    codes = sum(layer.n_ternary_weights for layer in packed.linears.values())
    assert codes % 4 == 0  # the tiny model's K is a multiple of 4: no padding bits
    assert sizes["bits_per_weight_ternary"] == pytest.approx((2 * codes + 32 * rows) / codes)
    n_params = sum(p.numel() for p in model.parameters())
    assert sizes["parameters"] == n_params and sizes["fp32_tensor_bytes"] == 4 * n_params
    assert sizes["tensor_bytes"] < sizes["fp32_tensor_bytes"]


def test_a_version_1_file_with_one_scale_a_layer_still_loads(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    model = tiny_student(4)
    path = save_packed(pack_model(model), tmp_path / "v2.safetensors")
    with safe_open(str(path), framework="numpy") as handle:
        header = json.loads(handle.metadata()["header"])
    tensors = load_file(str(path))
    for name, info in header["layers"].items():  # version 1: one gamma a layer, as a hex float in the header
        info["gamma"] = float(tensors.pop(f"linear/{name}/gamma")[0]).hex()
    save_file(tensors, str(tmp_path / "v1.safetensors"),
              metadata={"format": "bitzero-packed", "version": "1", "header": json.dumps(header)})
    old = load_packed(tmp_path / "v1.safetensors")
    for name, layer in load_packed(path).linears.items():
        assert np.array_equal(old.linears[name].gamma, layer.gamma), name


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "x.safetensors"
    bogus.write_bytes(b"not a safetensors file")
    with pytest.raises(PackingError, match="cannot read"):
        load_packed(bogus)


@pytest.mark.parametrize("in_features", [32, 96, 70])  # one block, three, a padded last block
def test_int4_blocks_dequantize_within_half_a_step(in_features: int) -> None:
    weight = np.random.default_rng(in_features).normal(size=(6, in_features)).astype(np.float32)
    weight[0, :32] = 0.5  # a constant block
    packed = quantize_int4(weight)
    blocks = -(-in_features // 32)
    assert packed.blob.shape == (6, blocks, 16) and packed.scales.shape == packed.zero_points.shape == (6, blocks)
    step = np.repeat(packed.scales, 32, axis=1)[:, :in_features]
    assert np.all(np.abs(packed.dense() - weight) <= step / 2 + 1e-6)
    assert np.allclose(packed.dense()[0, :32], 0.5)


def q4_1_weight(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """GGUF Q4_1 blocks of 32, min + scale x code with an fp16 scale and min: the format the real
    SmolLM2 weights come in; every block spans its range."""
    codes = rng.integers(0, 16, size=(n, k)).astype(np.float32)
    codes[:, 0::32], codes[:, 1::32] = 0, 15
    blocks = -(-k // 32)
    scale = rng.uniform(0.01, 0.1, size=(n, blocks)).astype(np.float16).astype(np.float32).repeat(32, axis=1)[:, :k]
    minimum = rng.uniform(-1.0, -0.2, size=(n, blocks)).astype(np.float16).astype(np.float32).repeat(32, axis=1)[:, :k]
    return (minimum + scale * codes).astype(np.float32)


def test_int4_restores_a_q4_1_grid_exactly() -> None:
    weight = q4_1_weight(np.random.default_rng(3), 4, 64)
    assert np.allclose(quantize_int4(weight).dense(), weight, atol=1e-6)
    assert not np.allclose(quantize_int4(weight + 0.003).dense(), weight + 0.003, atol=1e-6)  # off the grid: rounded


@pytest.mark.parametrize(("n", "k"), [(20, 96), (16, 64), (5, 40)])  # odd block counts and a short tile
def test_int4_kernel_blocks_hold_the_same_weights(n: int, k: int) -> None:
    """Int4MatMul's layout: codes 0-15 of a block in the low nibbles, 16-31 in the high ones; scales
    and mins sixteen rows side by side; blocks padded to an even count with zero weights."""
    packed = quantize_int4(np.random.default_rng(n).normal(size=(n, k)).astype(np.float32))
    codes, scales, mins = packed.kernel_blocks()
    blocks = 2 * -(-k // 64)
    assert codes.shape == (n, blocks, 16) and scales.shape == mins.shape == (-(-n // 16), blocks, 16)
    assert scales.dtype == mins.dtype == np.float16
    values = np.concatenate([codes & 0x0F, codes >> 4], axis=-1).astype(np.float32)  # (n, blocks, 32)
    per_row = lambda tiles: tiles.transpose(0, 2, 1).reshape(-1, blocks)[:n].astype(np.float32)  # noqa: E731
    dense = values * per_row(scales)[..., None] + per_row(mins)[..., None]
    assert np.allclose(dense.reshape(n, -1)[:, :k], packed.dense(), atol=1e-6)
    assert not dense.reshape(n, -1)[:, -(-k // 32) * 32:].any()  # the padding block(s) weigh nothing


@pytest.mark.parametrize("in_features", [64, 96])
def test_int4_layout_is_what_matmulnbits_computes(in_features: int) -> None:
    weight = np.random.default_rng(1).normal(size=(40, in_features)).astype(np.float32)
    packed = quantize_int4(weight)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(packed.blob, "b"), (packed.scales, "s"), (packed.zero_points, "z")]]
    node = helper.make_node("MatMulNBits", ["x", "b", "s", "z"], ["y"], domain="com.microsoft",
                            K=in_features, N=40, bits=4, block_size=32)  # accuracy_level 0: fp32 activations
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, in_features])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 40])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)],
                              ir_version=10)
    x = np.random.default_rng(2).normal(size=(3, in_features)).astype(np.float32)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.allclose(got, x @ packed.dense().T, atol=1e-4)


def _read_kernel_layout(packed: np.ndarray, k: int) -> np.ndarray:
    """The codes back from TernaryMatMul's layout, as its comment describes it, one weight at a time."""
    n = packed.shape[0]
    whole = (-(-k // 64) * 64) // 128
    codes = np.empty((n, k), dtype=np.int8)
    for i in range(k):
        block, offset = divmod(i, 128)
        width = 32 if block < whole else 16  # a plane's codes: 32 a block, 16 in the closing half block
        plane, j = divmod(offset, width)
        codes[:, i] = ((packed[:, block * 32 + j] >> (2 * plane)) & 3).astype(np.int8) - 1
    return codes


@pytest.mark.parametrize("in_features", [3, 64, 100, 576, 577, 1536])
def test_kernel_layout_holds_every_code_where_the_kernel_reads_it(in_features: int) -> None:
    codes = np.random.default_rng(in_features).integers(-1, 2, size=(3, in_features)).astype(np.int8)
    packed = kernel_codes(codes)
    assert packed.shape == (3, -(-in_features // 64) * 16)  # 2 bits a weight, K padded to 64
    assert np.array_equal(_read_kernel_layout(packed, in_features), codes)
