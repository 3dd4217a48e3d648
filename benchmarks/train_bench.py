"""Training benchmark: tokens/s and peak memory, ternary vs full precision, in one run.

Three trainers on the same random token batches (random ids cost exactly what text costs):

  full-precision   the teacher (nn.Linear), the baseline of every ratio
  ternary          the student without a teacher (BitLinear: fake-quant weights and activations)
  ternary+kd       the student with the distillation loss (a frozen teacher forward per step)

Each runs in its own subprocess so its peak memory is its own: max RSS on CPU, peak allocated
memory on CUDA (fp32 on CPU; bf16, or fp16 with a gradient scaler, on CUDA as in training).
The first ``--warmup`` steps are not timed. ``--target-share`` leaves that share of the positions
with a loss and masks the rest, as training on the assistant's tokens does (the vocabulary
projection then runs at the target positions only: compare 1.0 with the data's share).

    python benchmarks/train_bench.py                      # demo shape, CPU (and CUDA if present)
    python benchmarks/train_bench.py --size gpu --device cuda --batch 32 --steps 30
    python benchmarks/train_bench.py --size smollm2 --batch 2 --steps 3 --threads 2 --target-share 0.5
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

VOCAB = 640  # the demo tokenizer's size
SIZES: dict[str, dict[str, Any]] = {
    "demo": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128, "vocab_size": VOCAB},
    "gpu": {"n_layer": 8, "n_head": 8, "n_embd": 512, "block_size": 256, "vocab_size": VOCAB},
    # SmolLM2-135M's shape and vocabulary, at the demo's training length (random weights).
    "smollm2": {"n_layer": 30, "n_head": 9, "n_kv_head": 3, "n_embd": 576, "ffn_hidden": 1536, "block_size": 128,
                "vocab_size": 49152},
}
ROWS = ("full-precision", "ternary", "ternary+kd")


def measure(
    row: str, size: str, device: str, batch: int, steps: int, warmup: int, threads: int, target_share: float
) -> dict[str, Any]:
    """Time ``steps`` optimizer steps of one trainer (runs inside the child process)."""
    import torch

    from bitzero.model import IGNORE_INDEX, BitZeroLM, ModelConfig
    from bitzero.train import Batch, DistillLoss, TrainConfig
    from bitzero.train.ddp import DistContext
    from bitzero.train.trainer import Trainer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    shape = SIZES[size]
    seq, vocab = shape["block_size"], shape["vocab_size"]
    model = BitZeroLM(ModelConfig(quantized=row != "full-precision", **shape))
    loss_fn = None
    if row == "ternary+kd":
        teacher = BitZeroLM(ModelConfig(quantized=False, **shape))
        loss_fn = DistillLoss(teacher, alpha=0.5, beta=0.5, temperature=2.0)
    cfg = TrainConfig(max_steps=steps + warmup, batch_size=batch, device=device, precision="auto")
    ctx = DistContext(device=torch.device(device))
    trainer = Trainer(model, cfg, ctx, loss_fn)
    idx = torch.randint(vocab, (batch, seq + 1))
    targets = idx[:, 1:].clone()
    targets[:, : round(seq * (1 - target_share))] = IGNORE_INDEX  # the prompt's share: no loss
    micro = [Batch(idx[:, :-1], targets)]
    for _ in range(warmup):
        trainer.step(micro)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        trainer.step(micro)
    if device == "cuda":
        torch.cuda.synchronize()
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = time.perf_counter() - started
    return {
        "row": row,
        "params": model.num_params(),
        "precision": str(trainer.dtype).removeprefix("torch."),
        "tokens_per_s": batch * seq * steps / seconds,
        "ms_per_step": 1000 * seconds / steps,
        "peak_mb": peak_mb,
    }


def run_child(args: argparse.Namespace, row: str, device: str) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--child", row, "--device", device, "--size", args.size,
        "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
        "--threads", str(args.threads), "--target-share", str(args.target_share),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="demo")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 is fastest on a busy 2-core box)")
    parser.add_argument("--target-share", type=float, default=1.0, help="share of positions with a loss (0, 1]")
    parser.add_argument("--child", choices=ROWS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0 < args.target_share <= 1:
        parser.error(f"--target-share must be in (0, 1], got {args.target_share}")
    if args.child:
        print(json.dumps(measure(args.child, args.size, args.device, args.batch, args.steps, args.warmup, args.threads,
                                 args.target_share)))
        return

    import torch

    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else [args.device]
    devices = ["cpu" if d == "auto" else d for d in devices]
    shape = SIZES[args.size]
    print(f"size {args.size} {shape}, batch {args.batch} x {shape['block_size']} tokens "
          f"({args.target_share:.0%} with a loss), {args.steps} timed steps after {args.warmup} warm-up")
    for device in devices:
        name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {args.threads} thread(s)"
        print(f"\n{device}: {name}")
        print(f"{'trainer':<16}{'params':>10}{'precision':>11}{'tokens/s':>11}{'x fp':>7}{'ms/step':>10}{'peak MB':>10}{'x fp':>7}")
        results = [run_child(args, row, device) for row in ROWS]
        base = results[0]
        for r in results:
            print(
                f"{r['row']:<16}{r['params']:>10,}{r['precision']:>11}{r['tokens_per_s']:>11,.0f}"
                f"{r['tokens_per_s'] / base['tokens_per_s']:>7.2f}{r['ms_per_step']:>10.1f}"
                f"{r['peak_mb']:>10.1f}{r['peak_mb'] / base['peak_mb']:>7.2f}"
            )


if __name__ == "__main__":
    main()
