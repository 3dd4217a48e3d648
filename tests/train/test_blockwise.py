"""Block-wise reconstruction: it lowers every block's output error against the rung before it,
codes stay strictly ternary, critical rows stay full precision, and the model's trainability is
left as it was."""

import pytest
import torch

from bitzero.model.pretrained import ternary_student
from bitzero.train.blockwise import BlockSettings, reconstruct_blocks
from bitzero.train.conversion import _calibration_inputs
from tests.tiny import tiny_model
from tests.train.test_conversion import _examples


def _student(per_row: bool) -> tuple[torch.nn.Module, dict[str, torch.Tensor], list]:
    torch.manual_seed(0)
    teacher = tiny_model(quantized=False)
    student = ternary_student(teacher, critical_ratio=0.1, per_row_scale=per_row)
    weights = {key: layer.weight.detach().clone() for key, layer in student.bit_linears()}
    inputs = _calibration_inputs(_examples(teacher.config.vocab_size, 6, 1), 32, 0.1)
    return student, weights, inputs


@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("feed", ["student", "teacher"])
def test_reconstruction_lowers_each_blocks_error_and_keeps_codes_ternary(per_row, feed):
    student, weights, inputs = _student(per_row)
    # Zero seconds: one step per block, the error of the converted blocks as they were (almost).
    before = reconstruct_blocks(*_student(per_row)[:1], weights, inputs, BlockSettings(seconds=0.0, lr=0.0, scale_lr=0.0, feed=feed))
    masks = {key: layer.critical_mask.clone() for key, layer in student.bit_linears()}
    after = reconstruct_blocks(student, weights, inputs, BlockSettings(seconds=60.0, epochs=8.0, feed=feed))
    assert len(after) == len(before) == student.config.n_layer
    assert all(a < b for a, b in zip(after, before, strict=True))
    for key, layer in student.bit_linears():
        codes, _ = layer.ternary_codes()
        assert set(codes.unique().tolist()) <= {-1.0, 0.0, 1.0}
        assert torch.equal(layer.critical_mask, masks[key])
        effective = layer.effective_weight()
        assert torch.equal(effective[masks[key]], layer.weight.detach()[masks[key]])
    assert all(parameter.requires_grad for parameter in student.parameters())


def test_bad_block_settings_are_refused():
    with pytest.raises(ValueError, match="feed"):
        BlockSettings(feed="both")
    with pytest.raises(ValueError, match="seconds"):
        BlockSettings(seconds=-1.0)
    with pytest.raises(ValueError, match="epochs"):
        BlockSettings(epochs=0.0)
    with pytest.raises(ValueError, match="pull"):
        BlockSettings(pull=0.5)

