"""Automatic batch size: grows while steps fit, backs off on (simulated) out-of-memory."""

import pytest
import torch

from bitzero.train import BatchSizeError, find_batch_size


def fake_gpu(capacity: int):
    tried: list[int] = []

    def try_step(size: int) -> None:
        tried.append(size)
        if size > capacity:
            raise torch.OutOfMemoryError(f"simulated OOM at {size}")

    return try_step, tried


def test_grows_until_oom_and_keeps_the_last_fit():
    try_step, tried = fake_gpu(capacity=24)
    assert find_batch_size(try_step, limit=256) == 16
    assert tried == [1, 2, 4, 8, 16, 32]


def test_backs_off_from_a_start_that_does_not_fit():
    try_step, tried = fake_gpu(capacity=5)
    assert find_batch_size(try_step, limit=64, start=64) == 4
    assert tried[:5] == [64, 32, 16, 8, 4]


def test_capped_by_the_configured_batch():
    try_step, _ = fake_gpu(capacity=1000)
    assert find_batch_size(try_step, limit=48, start=8) == 48


def test_keeps_a_memory_reserve():
    peak = {"fraction": 0.0}

    def try_step(size: int) -> None:
        peak["fraction"] = size / 40  # memory grows with the batch; 40 would fill the device

    found = find_batch_size(try_step, limit=256, memory_fraction=lambda: peak["fraction"], reserve=0.1)
    assert found == 32  # 32/40 = 0.8 fits under 0.9; 64 would need 1.6


def test_nothing_fits():
    try_step, _ = fake_gpu(capacity=0)
    freed = []
    with pytest.raises(BatchSizeError):
        find_batch_size(try_step, limit=8, start=8, on_oom=lambda: freed.append(1))
    assert len(freed) == 4  # 8, 4, 2, 1
