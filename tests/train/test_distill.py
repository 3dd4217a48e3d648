"""The distillation loss against a hand computation, and the DistillLoss loss_fn."""

import math

import torch

from bitzero.model import IGNORE_INDEX, BitZeroLM, ModelConfig
from bitzero.train import Batch, DistillLoss, distillation_loss


def _log_softmax(values: list[float], temperature: float = 1.0) -> list[float]:
    scaled = [v / temperature for v in values]
    norm = math.log(sum(math.exp(v) for v in scaled))
    return [v - norm for v in scaled]


def test_distillation_loss_equals_hand_computation():
    student = torch.tensor([[[1.0, 2.0, 0.0], [0.5, 0.5, 3.0], [9.0, -9.0, 0.0]]])
    teacher = torch.tensor([[[2.0, 0.5, 1.0], [0.0, 1.0, 2.0], [-9.0, 9.0, 0.0]]])
    targets = torch.tensor([[1, 2, IGNORE_INDEX]])  # the third token is masked out of both terms
    alpha, beta, temp = 0.3, 0.7, 2.0

    ce = -(_log_softmax([1.0, 2.0, 0.0])[1] + _log_softmax([0.5, 0.5, 3.0])[2]) / 2
    kl = 0.0
    for s_row, t_row in (([1.0, 2.0, 0.0], [2.0, 0.5, 1.0]), ([0.5, 0.5, 3.0], [0.0, 1.0, 2.0])):
        s, t = _log_softmax(s_row, temp), _log_softmax(t_row, temp)
        kl += sum(math.exp(ti) * (ti - si) for si, ti in zip(s, t, strict=True))
    kl /= 2
    expected = alpha * ce + beta * temp**2 * kl

    loss, got_ce, got_kl = distillation_loss(student, teacher, targets, alpha, beta, temp)
    assert math.isclose(float(got_ce), ce, rel_tol=1e-6)
    assert math.isclose(float(got_kl), kl, rel_tol=1e-6)
    assert math.isclose(float(loss), expected, rel_tol=1e-6)


def test_identical_teacher_gives_zero_kl():
    logits = torch.randn(2, 4, 7)
    targets = torch.randint(0, 7, (2, 4))
    _, _, kl = distillation_loss(logits, logits.clone(), targets, 0.5, 0.5, 3.0)
    assert abs(float(kl)) < 1e-6


def test_distill_loss_fn_keeps_teacher_frozen_and_trains_student():
    torch.manual_seed(0)
    teacher = BitZeroLM(ModelConfig(vocab_size=12, n_layer=1, n_head=2, n_embd=16, block_size=8, quantized=False))
    student = BitZeroLM(ModelConfig(vocab_size=12, n_layer=1, n_head=2, n_embd=16, block_size=8, quantized=True))
    idx = torch.randint(0, 12, (2, 6))
    loss, metrics = DistillLoss(teacher, alpha=0.5, beta=0.5, temperature=2.0)(student, Batch(idx, idx))
    loss.backward()
    assert set(metrics) == {"ce", "kl"}
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher.training
    assert student.embed.weight.grad.abs().sum() > 0


def test_distill_loss_fn_equals_the_loss_on_full_logits():
    """Projecting only the target positions changes nothing: loss and gradients as on all logits."""
    torch.manual_seed(0)
    teacher = BitZeroLM(ModelConfig(vocab_size=12, n_layer=1, n_head=2, n_embd=16, block_size=8, quantized=False))
    student = BitZeroLM(ModelConfig(vocab_size=12, n_layer=1, n_head=2, n_embd=16, block_size=8, quantized=True))
    idx = torch.randint(0, 12, (2, 6))
    targets = idx.roll(-1, dims=1)
    targets[:, :3] = IGNORE_INDEX  # the prompt: no loss there
    batch = Batch(idx, targets)
    loss, _ = DistillLoss(teacher, alpha=0.5, beta=0.5, temperature=2.0)(student, batch)
    loss.backward()
    grads = [p.grad.clone() for p in student.parameters()]
    student.zero_grad()
    with torch.no_grad():
        teacher_logits, _ = teacher(idx)
    expected, _, _ = distillation_loss(student(idx)[0], teacher_logits, targets, 0.5, 0.5, 2.0, batch.denominator)
    expected.backward()
    # Only float32 summation order may differ (other GEMM blockings on other CPUs): 1e-4 of a
    # value; a position off by one moves the loss and gradients by O(1) of their size.
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-6)
    for got, want in zip(grads, (p.grad for p in student.parameters()), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
