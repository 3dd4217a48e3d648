"""What limits self-play speed: verified programs per second, and rollout tokens/s with vs without
the KV cache.

1. The verifier labels generator tasks (each call run twice, in different interpreters, for the
   determinism check) and scores abduction answers (one run each): programs per second.
2. The solver's rollout on a batch of real chat-templated task prompts, sampled at temperature 1,
   with the KV cache and without it (the whole sequence re-run per token): generated tokens per
   second and the ratio, on the distilled student checkpoint (SmolLM2-135M's shape).
Figures only, no assertions: usage
`python benchmarks/selfplay_bench.py [--checkpoint data/06_models/student] [--tasks N] [--threads T]`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from bitzero.model import load_checkpoint
from bitzero.model.checkpoint import TOKENIZER_FILE
from bitzero.selfplay import Sandbox
from bitzero.selfplay.agent import Agent
from bitzero.selfplay.generator import generate_tasks
from bitzero.selfplay.prompts import solver_prompt
from bitzero.selfplay.verify import Verifier
from bitzero.text import Tokenizer


def bench_verifier(count: int, workers: int) -> list[tuple[str, float, float]]:
    """(label, programs, seconds) for labelling and scoring on `workers` sandbox workers."""
    tasks = generate_tasks(max(1, count // 12), seed=0, kinds=["deduction", "abduction", "math"])
    with Sandbox(workers=workers) as box:
        verifier = Verifier(box)
        verifier.label(tasks[:workers * 2])  # start the workers outside the timing
        verifier.stats.programs, verifier.stats.seconds = 0, 0.0
        labelled = [t for t in verifier.label(tasks)[0] if t is not None]
        rows = [(f"label (x2 determinism), {workers} worker(s)", verifier.stats.programs, verifier.stats.seconds)]
        abduction = [t for t in labelled if t.kind == "abduction"]
        verifier.stats.programs, verifier.stats.seconds = 0, 0.0
        verifier.score(abduction, [t.inputs[0] for t in abduction])
        rows.append((f"score abduction answers, {workers} worker(s)", verifier.stats.programs, verifier.stats.seconds))
    return rows


def bench_rollout(checkpoint: Path, batch: int, new_tokens: int, repeats: int) -> list[tuple[str, float, float]]:
    """(label, generated tokens, seconds) with and without the KV cache."""
    if not (checkpoint / TOKENIZER_FILE).is_file():
        raise SystemExit(f"no checkpoint with a tokenizer at {checkpoint}: run the distillation stage first")
    tokenizer = Tokenizer.load(checkpoint / TOKENIZER_FILE)
    model = load_checkpoint(checkpoint)
    tasks = [t.labelled(["0"]) for t in generate_tasks(batch, seed=1, kinds=["deduction"], levels=[1])][:batch]
    prompts = [solver_prompt(t) for t in tasks]
    rows = []
    for use_cache in (False, True):
        agent = Agent(model, tokenizer, batch_size=batch, use_cache=use_cache)
        agent.sample(prompts[:2], 2, 1.0)  # warm-up
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        produced = 0
        for _ in range(repeats):
            completions = agent.sample(prompts, new_tokens, 1.0, generator)
            produced += sum(len(c.tokens) for c in completions)
        label = f"rollout {len(prompts)}x{new_tokens} tokens, {'KV cache' if use_cache else 'no cache (baseline)'}"
        rows.append((label, produced, time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("data/06_models/student"))
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} torch thread(s)\n")
    print(f"{'verifier':<52} {'programs':>9} {'seconds':>8} {'prog/s':>8} {'x 1 worker':>10}")
    rows = bench_verifier(args.tasks, 1) + (bench_verifier(args.tasks, args.workers) if args.workers > 1 else [])
    for label, programs, seconds in rows:
        base = next(p / s for lab, p, s in rows if lab.split(",")[0] == label.split(",")[0])
        rate = programs / seconds
        print(f"{label:<52} {programs:>9.0f} {seconds:>8.2f} {rate:>8.1f} {rate / base:>10.2f}")
    print(f"\n{'rollout':<52} {'tokens':>9} {'seconds':>8} {'tok/s':>8} {'x no cache':>10}")
    rows = bench_rollout(args.checkpoint, args.batch, args.new_tokens, args.repeats)
    base = rows[0][1] / rows[0][2]
    for label, tokens, seconds in rows:
        rate = tokens / seconds
        print(f"{label:<52} {tokens:>9.0f} {seconds:>8.2f} {rate:>8.1f} {rate / base:>10.2f}")


if __name__ == "__main__":
    main()
