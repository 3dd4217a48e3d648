"""What converting a pretrained model needs from training: the attention-relation loss, the
quantization warm-up, and held-out NLL per source."""

import pytest
import torch

from bitzero.model import BitLinear
from bitzero.model.pretrained import ternary_student
from bitzero.train import Batch, DistillLoss, Example, TrainConfig, fit
from bitzero.train.distill import relation_kl
from bitzero.train.heldout import held_out_nll
from tests.tiny import tiny_model


def _batch(vocab: int) -> Batch:
    idx = torch.randint(0, vocab, (2, 12), generator=torch.Generator().manual_seed(1))
    return Batch(idx, idx.roll(-1, dims=1), denominator=24.0)


def test_relations_vanish_for_the_teacher_itself_and_pull_the_student():
    teacher = tiny_model(quantized=False)
    batch = _batch(teacher.config.vocab_size)
    captured = {}
    teacher.blocks[-1].attn.capture = captured
    teacher(batch.idx)
    keep = torch.ones_like(batch.idx, dtype=torch.bool)
    assert float(relation_kl(captured, captured, keep).detach()) == pytest.approx(0.0, abs=1e-6)
    student = ternary_student(teacher, critical_ratio=0.0).train()
    loss_fn = DistillLoss(teacher, 0.5, 0.5, 1.0, gamma=1.0, pad_id=None)
    loss, metrics = loss_fn(student, batch)
    assert metrics["relation_kl"] > 0
    loss.backward()
    assert student.blocks[-1].attn.q_proj.weight.grad.abs().sum() > 0
    assert teacher.blocks[-1].attn.capture is None and student.blocks[-1].attn.capture is None


def test_quantization_warm_up_starts_full_precision_and_ends_ternary():
    teacher = tiny_model(quantized=False)
    student = ternary_student(teacher, critical_ratio=0.0).train()
    idx = _batch(teacher.config.vocab_size).idx
    for layer in student.modules():
        if isinstance(layer, BitLinear):
            layer.quant_mix = 0.0
    with torch.no_grad():
        torch.testing.assert_close(student(idx)[0], teacher(idx)[0], atol=1e-5, rtol=1e-4)
    data = [Example(list(range(1, 14)), [True] * 13)] * 4
    fit(student, data, TrainConfig(max_steps=3, batch_size=2, quant_warmup_steps=10, progress=False, device="cpu"))
    assert all(layer.quant_mix == 1.0 for layer in student.modules() if isinstance(layer, BitLinear))


def test_held_out_nll_weights_sources_by_their_tokens():
    model = tiny_model(quantized=False)
    short = [Example([1, 2, 3], [False, True, True])]
    long = [Example(list(range(1, 30)), [False] + [True] * 28)]
    figures = held_out_nll(model, {"short": short, "long": long}, batch_size=4, seq_len=None)
    assert set(figures["sources"]) == {"short", "long"} and figures["tokens"] == 2 + 28
    expected = (figures["sources"]["short"] * 2 + figures["sources"]["long"] * 28) / 30
    assert figures["overall"] == pytest.approx(expected)
