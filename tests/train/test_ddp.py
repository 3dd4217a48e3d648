"""Two CPU processes under torchrun (gloo) train like one process with the doubled batch."""

import os
import subprocess
import sys

import pytest
import torch

from bitzero.train import ddp

SCRIPT = r'''
import sys
import torch
from bitzero.model import BitZeroLM, ModelConfig
from bitzero.train import TrainConfig, fit, init_distributed, shutdown_distributed

torch.manual_seed(0)
model = BitZeroLM(ModelConfig(vocab_size=16, n_layer=2, n_head=2, n_embd=32, ffn_hidden=64, block_size=32, quantized=True))
sequence = [(i * 7) % 16 for i in range(64)]
# Different lengths and answer masks: ranks see different target counts, which the global
# per-token normalisation must absorb exactly.
data = [(sequence[o : o + 6 + o % 9], [i >= o % 4 for i in range(6 + o % 9)]) for o in range(24)]
cfg = TrainConfig(max_steps=4, batch_size=8, lr=1e-2, device="cpu", num_threads=1, progress=False)
losses = []
fit(model, data, cfg, on_metrics=lambda step, m: losses.append(m["train/loss"]))
ctx = init_distributed("cpu")
if ctx.is_main:
    torch.save({"state": model.state_dict(), "losses": losses, "world": ctx.world_size}, sys.argv[1])
shutdown_distributed()
'''


def _run(args: list[str], tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_match_one_with_the_doubled_batch(tmp_path):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    _run([sys.executable, str(script), str(tmp_path / "single.pt")], tmp_path)
    _run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), str(tmp_path / "ddp.pt")],
        tmp_path,
    )
    single = torch.load(tmp_path / "single.pt")
    ddp = torch.load(tmp_path / "ddp.pt")
    assert (single["world"], ddp["world"]) == (1, 2)
    assert len(ddp["losses"]) == 1  # log_every=10 > 4 steps: only the final step reports
    torch.testing.assert_close(torch.tensor(ddp["losses"]), torch.tensor(single["losses"]), rtol=1e-4, atol=1e-5)
    for name, value in single["state"].items():
        torch.testing.assert_close(ddp["state"][name], value, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize(("cpu_max", "local_world", "expected"), [
    ("max 100000", "1", None),          # no limit: every core this process may use
    ("200000 100000", "1", 2),          # limits.cpu: 2
    ("250000 100000", "2", 1),          # 2.5 cores over two ranks
    ("50000 100000", "1", 1),           # half a core still gets a thread
])
def test_cpu_threads_follow_the_container_limit(tmp_path, monkeypatch, cpu_max, local_world, expected):
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    monkeypatch.setattr(ddp, "CGROUP_CPU_MAX", tmp_path / "cpu.max")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", local_world)
    cores = len(os.sched_getaffinity(0))
    assert ddp.cpu_threads_per_rank() == (min(expected, cores) if expected is not None else cores)
