"""2-bit packing and the compact checkpoint: lossless for codes, bit-exact for the model."""

from pathlib import Path

import numpy as np
import pytest
import torch

from bitzero.export.convert import pack_model, unpack_model
from bitzero.export.packing import PackingError, load_packed, pack_codes, save_packed, unpack_codes
from bitzero.text import Tokenizer
from tests.export.conftest import tiny_model


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


@pytest.mark.parametrize(("ffn_type", "seed"), [("squared_relu", 1), ("swiglu", 2)])
def test_packed_checkpoint_loads_back_bit_exactly(tmp_path: Path, ffn_type: str, seed: int) -> None:
    model = tiny_model(Tokenizer.default(), ffn_type=ffn_type, seed=seed)
    path = save_packed(pack_model(model), tmp_path / "model.packed.safetensors")
    restored = unpack_model(load_packed(path))
    ids = torch.randint(0, model.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        assert torch.equal(model(ids)[0], restored(ids)[0])
    for (name, layer), (_, back) in zip(model.bit_linears(), restored.bit_linears(), strict=True):
        assert torch.equal(layer.effective_weight(), back.effective_weight()), name
        assert torch.equal(layer.critical_mask, back.critical_mask), name


def test_sizes_report_two_bits_per_ternary_weight(model: torch.nn.Module) -> None:
    sizes = pack_model(model).sizes()
    assert 2.0 <= sizes["bits_per_weight_ternary"] < 2.01  # 2-bit codes + one fp32 gamma a layer
    n_params = sum(p.numel() for p in model.parameters())
    assert sizes["parameters"] == n_params and sizes["fp32_tensor_bytes"] == 4 * n_params
    assert sizes["tensor_bytes"] < sizes["fp32_tensor_bytes"]


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "x.safetensors"
    bogus.write_bytes(b"not a safetensors file")
    with pytest.raises(PackingError, match="cannot read"):
        load_packed(bogus)
