"""Data-parallel self-play: rollouts per second on 1 rank and on N ranks (torchrun), same settings.

Each rank runs the self-play loop (propose, verify, solve, PPO and supervised steps) on its own
rollouts; under torchrun the ranks pool buffers and rewards and update by DDP. The figure that
matters is verified rollouts (proposals + solver samples, all ranks) per second of wall time,
and its ratio to one rank measured in the same run. Each rank brings the same resources in both
runs (on CPU `cores / ranks` torch threads and one sandbox worker; on CUDA a GPU each), so the
ratio is what adding a device buys; the model is the demo student's size (4 layers, width 128),
untrained. Figures only, no assertions:
`python benchmarks/selfplay_ddp_bench.py [--ranks 2] [--iterations 6] [--device cpu|cuda]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bitzero.model import BitZeroLM, ModelConfig
from bitzero.selfplay import Sandbox
from bitzero.selfplay.buffer import TaskBuffer
from bitzero.selfplay.config import SelfPlayConfig
from bitzero.selfplay.experiment import label_all
from bitzero.selfplay.generator import LEVELS, generate_tasks
from bitzero.selfplay.loop import SelfPlay
from bitzero.selfplay.verify import Verifier
from bitzero.text import Tokenizer
from bitzero.train.ddp import init_distributed


def rank_main(iterations: int, device: str, threads: int, out: Path) -> None:
    """One rank: a warm-up iteration, then `iterations` timed ones; rank 0 writes the figures."""
    ctx = init_distributed(device)
    torch.set_num_threads(threads)
    tokenizer = Tokenizer.default()
    torch.manual_seed(0)
    model = BitZeroLM(ModelConfig(vocab_size=tokenizer.vocab_size, n_layer=4, n_head=4, n_embd=128, block_size=160))
    cfg = SelfPlayConfig(device=device, sandbox_workers=1, proposal_tokens=48, kl_coef=0.0, band_low=0.0, band_high=1.0,
                         answer_tokens={"deduction": 12, "abduction": 12, "induction": 32, "math": 12}, sft_steps_per_iteration=4)
    with Sandbox(workers=cfg.sandbox_workers) as box:
        verifier = Verifier(box)
        buffer = TaskBuffer(label_all(verifier, generate_tasks(20, cfg.seed, cfg.kinds, LEVELS), ctx))
        arm = SelfPlay(model, tokenizer, buffer, verifier, cfg, use_ppo=True, seed=1, ctx=ctx)
        arm.iteration(0.0)
        start = time.perf_counter()
        for i in range(iterations):
            arm.iteration((i + 1) / (iterations + 1))
        seconds = time.perf_counter() - start
    rollouts = iterations * ctx.world_size * (cfg.proposals_per_iteration + cfg.tasks_per_iteration * cfg.samples_per_task)
    if ctx.is_main:
        out.write_text(json.dumps({"ranks": ctx.world_size, "seconds": seconds, "rollouts": rollouts,
                                   "device": str(ctx.device)}))


def launch(ranks: int, iterations: int, device: str, threads: int, folder: Path) -> dict:
    """This script under torchrun with `ranks` processes; its figures."""
    out = folder / f"ranks{ranks}.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", __file__,
         "--rank-main", "--iterations", str(iterations), "--device", device, "--threads", str(threads), "--out", str(out)],
        env=env, check=True,
    )
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per rank (default: cores / ranks)")
    parser.add_argument("--rank-main", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_main:
        rank_main(args.iterations, args.device, args.threads, args.out)
        return
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.ranks)
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}, device {args.device}, {threads} torch thread(s) per rank\n")
    with tempfile.TemporaryDirectory() as folder:
        rows = [launch(ranks, args.iterations, args.device, threads, Path(folder)) for ranks in (1, args.ranks)]
    print(f"{'ranks':>5} {'iterations':>10} {'rollouts':>9} {'seconds':>8} {'rollouts/s':>10} {'x 1 rank':>8}")
    base = rows[0]["rollouts"] / rows[0]["seconds"]
    for row in rows:
        rate = row["rollouts"] / row["seconds"]
        print(f"{row['ranks']:>5} {args.iterations:>10} {row['rollouts']:>9} {row['seconds']:>8.1f} {rate:>10.1f} {rate / base:>8.2f}")


if __name__ == "__main__":
    main()
