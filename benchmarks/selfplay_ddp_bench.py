"""Data-parallel self-play: rollouts per second on 1 rank and on N ranks (torchrun), same settings.

Each rank runs the self-play loop (propose, verify, solve, PPO and supervised steps) on its own
rollouts; under torchrun the ranks pool buffers and rewards and update by DDP. The figure that
matters is verified rollouts (proposals + solver samples, all ranks) per second of wall time,
and its ratio to one rank measured in the same run. Each rank brings the same resources in both
runs (on CPU `cores / ranks` torch threads and one sandbox worker; on CUDA a GPU each), so the
ratio is what adding a device buys; the model is the distilled student checkpoint (SmolLM2-135M's
shape) at the demo profile's sizes. Figures only, no assertions: `python
benchmarks/selfplay_ddp_bench.py [--checkpoint data/06_models/student] [--ranks 2] [--iterations 3] [--device cpu|cuda]`.
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
import yaml

from bitzero.model import load_checkpoint
from bitzero.model.checkpoint import TOKENIZER_FILE
from bitzero.selfplay import Sandbox
from bitzero.selfplay.buffer import TaskBuffer
from bitzero.selfplay.config import SelfPlayConfig
from bitzero.selfplay.experiment import label_all
from bitzero.selfplay.generator import LEVELS, generate_tasks
from bitzero.selfplay.loop import SelfPlay
from bitzero.selfplay.verify import Verifier
from bitzero.text import Tokenizer
from bitzero.train.ddp import init_distributed

PROFILE = Path(__file__).resolve().parents[1] / "conf" / "base" / "parameters_selfplay.yml"


def rank_main(checkpoint: Path, iterations: int, device: str, threads: int, out: Path) -> None:
    """One rank: a warm-up iteration, then `iterations` timed ones; rank 0 writes the figures."""
    ctx = init_distributed(device)
    torch.set_num_threads(threads)
    tokenizer = Tokenizer.load(checkpoint / TOKENIZER_FILE)
    model = load_checkpoint(checkpoint)
    params = yaml.safe_load(PROFILE.read_text())["selfplay"]
    cfg = SelfPlayConfig.from_dict({**params, "device": device, "sandbox_workers": 1, "band_low": 0.0, "band_high": 1.0})
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


def launch(checkpoint: Path, ranks: int, iterations: int, device: str, threads: int, folder: Path) -> dict:
    """This script under torchrun with `ranks` processes; its figures."""
    out = folder / f"ranks{ranks}.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", __file__,
         "--rank-main", "--checkpoint", str(checkpoint), "--iterations", str(iterations), "--device", device, "--threads", str(threads), "--out", str(out)],
        env=env, check=True,
    )
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("data/06_models/student"))
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per rank (default: cores / ranks)")
    parser.add_argument("--rank-main", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_main:
        rank_main(args.checkpoint, args.iterations, args.device, args.threads, args.out)
        return
    if not (args.checkpoint / TOKENIZER_FILE).is_file():
        raise SystemExit(f"no checkpoint with a tokenizer at {args.checkpoint}: run the distillation stage first")
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.ranks)
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}, device {args.device}, {threads} torch thread(s) per rank\n")
    with tempfile.TemporaryDirectory() as folder:
        rows = [launch(args.checkpoint.resolve(), ranks, args.iterations, args.device, threads, Path(folder))
                for ranks in (1, args.ranks)]
    print(f"{'ranks':>5} {'iterations':>10} {'rollouts':>9} {'seconds':>8} {'rollouts/s':>10} {'x 1 rank':>8}")
    base = rows[0]["rollouts"] / rows[0]["seconds"]
    for row in rows:
        rate = row["rollouts"] / row["seconds"]
        print(f"{row['ranks']:>5} {args.iterations:>10} {row['rollouts']:>9} {row['seconds']:>8.1f} {rate:>10.1f} {rate / base:>8.2f}")


if __name__ == "__main__":
    main()
