"""The training loop: a tiny model learns, metrics reach the callback, resume is exact,
and distillation runs through the same loop."""

import pytest
import torch

from bitzero.model import BitZeroLM, ModelConfig
from bitzero.train import DistillLoss, TrainConfig, evaluate, fit


def tiny(seed: int = 0, **overrides) -> BitZeroLM:
    torch.manual_seed(seed)
    values = dict(vocab_size=16, n_layer=2, n_head=2, n_embd=32, ffn_hidden=64, block_size=32, quantized=True)
    values.update(overrides)
    return BitZeroLM(ModelConfig(**values))


def toy_data(n: int = 12) -> list[tuple[list[int], list[bool]]]:
    """Windows of a repeating 0..9 sequence: learnable, so the loss must fall."""
    sequence = [i % 10 for i in range(n + 24)]
    return [(sequence[o : o + 20], [True] * 20) for o in range(n)]


def cfg(**overrides) -> TrainConfig:
    values = dict(max_steps=40, batch_size=8, lr=1e-2, progress=False, device="cpu", num_threads=1)
    values.update(overrides)
    return TrainConfig(**values)


def test_ternary_model_learns_a_toy_sequence():
    model = tiny()
    data = toy_data()
    before = evaluate(model, data)
    result = fit(model, data, cfg(max_steps=50), val_data=data)
    assert before > 2.0  # ~ln(16) at initialisation
    assert result.val_loss < 0.3 * before
    assert result.tokens_per_s > 0


def test_metrics_reach_the_callback_at_log_and_eval_steps():
    seen: dict[int, dict[str, float]] = {}
    fit(tiny(), toy_data(), cfg(max_steps=6, log_every=2, eval_every=3), val_data=toy_data(),
        on_metrics=lambda step, metrics: seen.update({step: metrics}))
    assert sorted(seen) == [2, 3, 4, 6]
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s"} <= set(seen[2])
    assert "val/loss" in seen[3] and "val/loss" in seen[6] and "val/loss" not in seen[2]


def test_a_time_budget_ends_training_before_max_steps_and_validates_the_end_point():
    """A 0-second budget stops after the first step, however fast the CPU; the last step still gets
    its validation and metrics, as at max_steps."""
    seen: dict[int, dict[str, float]] = {}
    result = fit(tiny(), toy_data(), cfg(max_steps=10_000, max_seconds=0.0, log_every=100, eval_every=50),
                 val_data=toy_data(), on_metrics=lambda step, metrics: seen.update({step: metrics}))
    assert result.steps == 1 and list(seen) == [1] and "val/loss" in seen[1]
    assert fit(tiny(), toy_data(), cfg(max_steps=3, max_seconds=3600.0)).steps == 3


class Interrupt(Exception):
    pass


def test_resume_continues_identically(tmp_path):
    settings = dict(max_steps=10, checkpoint_every=4, log_every=1)
    data = toy_data()
    straight = tiny(dropout=0.1)  # dropout: the RNG state must be restored too
    fit(straight, data, cfg(**settings), checkpoint_dir=tmp_path / "straight")

    def crash_at_6(step: int, metrics: dict[str, float]) -> None:
        if step == 6:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(tiny(dropout=0.1), data, cfg(**settings), checkpoint_dir=tmp_path / "resumed", on_metrics=crash_at_6)
    resumed = tiny(seed=123, dropout=0.1)  # different init: the weights must come from the state
    result = fit(resumed, data, cfg(**settings), checkpoint_dir=tmp_path / "resumed")
    assert result.steps == 10
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_student_distills_from_teacher_through_the_loop():
    data = toy_data()
    teacher = tiny(quantized=False)
    fit(teacher, data, cfg(max_steps=30))
    student = tiny(seed=1)
    seen: dict[int, dict[str, float]] = {}
    fit(student, data, cfg(max_steps=30, log_every=30), loss_fn=DistillLoss(teacher, 0.5, 0.5, 2.0),
        on_metrics=lambda step, metrics: seen.update({step: metrics}))
    metrics = seen[30]
    assert metrics["train/loss"] == pytest.approx(0.5 * metrics["train/ce"] + 0.5 * 4 * metrics["train/kl"], rel=1e-4)
    assert evaluate(student, data) < 1.0


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="max_steps"):
        cfg(max_steps=0)
    with pytest.raises(ValueError, match="schedule"):
        cfg(schedule="linear")
    with pytest.raises(ValueError, match="needs CUDA"):
        fit(tiny(), toy_data(), cfg(precision="bf16"))


def test_critical_channels_freeze_at_the_step_and_stay_frozen_in_checkpoints(tmp_path):
    from bitzero.model import load_checkpoint, save_checkpoint

    model = tiny(critical_ratio=0.25)
    masks = {}

    def record(step, metrics):
        masks[step] = {name: layer.critical_mask.clone() for name, layer in model.bit_linears()}

    fit(model, toy_data(), cfg(max_steps=30, log_every=10, critical_freeze_step=10), on_metrics=record)
    assert model.config.critical_mask_frozen
    for name in masks[10]:
        assert torch.equal(masks[10][name], masks[30][name]), name
    # A checkpoint keeps them fixed for later training (self-play).
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "ckpt"))
    assert loaded.config.critical_mask_frozen and all(layer.mask_frozen for _, layer in loaded.bit_linears())
    with torch.no_grad():  # the smallest rows become the largest: a live mask would move
        for _, layer in loaded.bit_linears():
            layer.weight.mul_(1.0 / layer.weight.norm(dim=1, keepdim=True) ** 2)
    fit(loaded, toy_data(), cfg(max_steps=5))
    for name, layer in loaded.bit_linears():
        assert torch.equal(layer.critical_mask, masks[30][name]), name
