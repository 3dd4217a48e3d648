"""LR schedules: the two-stage BitNet schedule at chosen steps (LR and weight decay), OneCycle."""

import itertools

import pytest
import torch

from bitzero.train import TrainConfig, build_optimizer, build_scheduler, two_stage_factor


def _run(cfg: TrainConfig, total: int) -> list[tuple[float, float]]:
    model = torch.nn.Linear(4, 4)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, total)
    seen = []
    for _ in range(total):
        seen.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["weight_decay"]))
        optimizer.step()
        scheduler.step()
    return seen


def test_two_stage_values_at_chosen_steps():
    cfg = TrainConfig(
        schedule="two_stage", lr=1e-2, weight_decay=0.1, warmup_frac=0.1, stage_split=0.5,
        stage1_end_ratio=0.5, stage2_peak_ratio=0.3, final_lr_ratio=0.05,
    )
    seen = _run(cfg, 100)
    expected = {
        0: (1e-2 * 1 / 10, 0.1),      # warm-up: (step + 1) / 10 steps
        9: (1e-2, 0.1),               # end of warm-up: the high peak
        # stage 1 cosine from 1.0 at step 10 towards 0.5 at step 50; halfway (step 30) = 0.75
        30: (1e-2 * 0.75, 0.1),
        49: (1e-2 * (0.5 + 0.5 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 39 / 40)).item())), 0.1),
        50: (1e-2 * 0.3, 0.0),        # stage 2: the lower peak, weight decay off
        75: (1e-2 * (0.05 + 0.25 * 0.5), 0.0),  # halfway down the stage-2 cosine
    }
    for step, (lr, wd) in expected.items():
        assert seen[step][0] == pytest.approx(lr, rel=1e-6), step
        assert seen[step][1] == wd, step
    assert two_stage_factor(99, 100, cfg) > 0.05


def test_two_stage_never_decays_norm_gains():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    optimizer = build_optimizer(model, TrainConfig(weight_decay=0.1))
    decays = {p.dim(): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decays == {2: 0.1, 1: 0.0}


def test_onecycle_peaks_at_lr_and_ends_low():
    cfg = TrainConfig(schedule="onecycle", lr=1e-2, warmup_frac=0.2)
    lrs = [lr for lr, _ in _run(cfg, 50)]
    assert max(lrs) == pytest.approx(1e-2)
    assert lrs.index(max(lrs)) in (9, 10)
    assert lrs[0] == pytest.approx(1e-2 / cfg.div_factor)
    assert lrs[-1] < 1e-2 / cfg.div_factor


@pytest.mark.parametrize("total", [3, 20, 40])
def test_onecycle_short_runs_still_warm_up(total):
    lrs = [lr for lr, _ in _run(TrainConfig(schedule="onecycle", lr=1e-2, warmup_frac=0.05), total)]
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(1e-2)
    assert all(a < b for a, b in itertools.pairwise(lrs[: peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[peak:]))
