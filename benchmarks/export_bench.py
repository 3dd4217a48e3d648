"""Export benchmark: file sizes, prefill/decode tokens/s and peak memory, PyTorch fp32 vs ONNX.

For each model size (``demo``: the demo profile's shape; ``100m``: the ~100M-parameter shape a
6 GB GPU trains; random weights, which run at the same speed as trained ones) it writes an fp32
checkpoint, the packed checkpoint and the ONNX variants, then times each engine in its own
subprocess, so peak memory (max RSS) is that engine's alone and ONNX workers never import torch:

  torch-fp32   PyTorch eager, fp32, the model's KV cache (the baseline)
  onnx-fp32    dense fp32 weights, fake-quant activations
  onnx-exact   MatMulInteger, int8 activations x int8 ternary codes
  onnx-nbits   MatMulNBits bits=2, accuracy_level=4

plus each ONNX variant on onnxruntime's CUDA provider when this onnxruntime build has one.
Greedy decoding of ``--decode`` tokens after a ``--prompt``-token prefill, best of ``--repeats``,
at each thread count of ``--threads``. Ratios are against the best PyTorch row for that figure
(on a loaded 2-core machine PyTorch's 2-thread attention can be far slower than 1 thread).

    python benchmarks/export_bench.py                       # both sizes, a few minutes on 2 cores
    python benchmarks/export_bench.py --sizes 100m --prompt 256 --decode 128 --repeats 5 --threads 2,4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SIZES: dict[str, dict[str, Any]] = {
    "demo": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 256},
    "100m": {"n_layer": 14, "n_head": 12, "n_embd": 768, "block_size": 512},
}
VARIANTS = ("fp32", "exact", "nbits")
VOCAB = 512  # the character tokenizer's order of magnitude


def build(size: str, folder: Path) -> dict[str, Any]:
    """Checkpoint, packed checkpoint and one ONNX file per variant; returns their sizes."""
    import onnx
    import torch

    from bitzero.export.convert import pack_model
    from bitzero.export.graph import build_graph
    from bitzero.export.packing import save_packed
    from bitzero.model import BitZeroLM, ModelConfig, save_checkpoint

    torch.manual_seed(0)
    model = BitZeroLM(ModelConfig(vocab_size=VOCAB, **SIZES[size])).eval()
    save_checkpoint(model, folder / "checkpoint")
    packed = pack_model(model)
    save_packed(packed, folder / "model.packed.safetensors")
    files = {"torch-fp32 checkpoint": folder / "checkpoint" / "model.safetensors", "packed": folder / "model.packed.safetensors"}
    for variant in VARIANTS:
        onnx.save_model(build_graph(packed, variant), folder / f"{variant}.onnx")
        files[f"onnx-{variant}"] = folder / f"{variant}.onnx"
    return {
        "parameters": model.num_params(),
        "bits_per_weight_ternary_packed": packed.sizes()["bits_per_weight_ternary"],
        "bytes": {name: path.stat().st_size for name, path in files.items()},
    }


def worker(engine: str, folder: Path, prompt: int, decode: int, repeats: int, threads: int) -> dict[str, float]:
    """Time one engine (runs in its own process); returns tokens/s and peak RSS."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, size=(1, prompt))
    step = _torch_engine(folder, threads) if engine == "torch-fp32" else _onnx_engine(engine, folder, threads)
    best_prefill = best_decode = float("inf")
    for _ in range(repeats + 1):  # the first round warms up
        start = time.perf_counter()
        token, state = step(ids, None)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(decode):
            token, state = step(np.array([[token]]), state)
        best_prefill, best_decode = min(best_prefill, prefill), min(best_decode, time.perf_counter() - start)
    return {
        "prefill_tokens_per_s": prompt / best_prefill,
        "decode_tokens_per_s": decode / best_decode,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _peak_rss_mb() -> float:
    """VmHWM: this process's peak resident memory (ru_maxrss would carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _torch_engine(folder: Path, threads: int):
    import torch

    from bitzero.model import load_checkpoint

    torch.set_num_threads(threads)
    model = load_checkpoint(folder / "checkpoint")

    @torch.no_grad()
    def step(ids: np.ndarray, cache: Any) -> tuple[int, Any]:
        if cache is None:
            cache = model.new_kv_cache()
        logits, _ = model(torch.from_numpy(ids), kv_cache=cache)
        return int(logits[0, -1].argmax()), cache

    return step


def _onnx_engine(engine: str, folder: Path, threads: int):
    import onnxruntime as ort

    _, variant, *device = engine.split("-")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == ["cuda"] else ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(folder / f"{variant}.onnx"), sess_options=options, providers=providers)
    outputs = [o.name for o in session.get_outputs()]
    pasts = [i for i in session.get_inputs() if i.name != "input_ids"]

    def step(ids: np.ndarray, cache: dict[str, np.ndarray] | None) -> tuple[int, dict[str, np.ndarray]]:
        feeds = cache or {p.name: np.zeros((1, p.shape[1], 0, p.shape[3]), np.float32) for p in pasts}
        results = dict(zip(outputs, session.run(None, {"input_ids": ids.astype(np.int64), **feeds}), strict=True))
        present = {p.name: results[p.name.replace("past_", "present_")] for p in pasts}
        return int(results["logits"][0, -1].argmax()), present

    return step


def engines() -> list[str]:
    import onnxruntime as ort

    names = ["torch-fp32", *(f"onnx-{v}" for v in VARIANTS)]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        names += [f"onnx-{v}-cuda" for v in VARIANTS]
    return names


def run_worker(engine: str, threads: int, folder: Path, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", engine, "--folder", str(folder),
               "--prompt", str(args.prompt), "--decode", str(args.decode), "--repeats", str(args.repeats),
               "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{engine} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(size: str, built: dict[str, Any], timings: dict[str, dict[str, float]]) -> None:
    torch_rows = [t for name, t in timings.items() if name.startswith("torch")]
    best = {key: max(t[key] for t in torch_rows) for key in ("prefill_tokens_per_s", "decode_tokens_per_s")}
    fp32_bytes = built["bytes"]["torch-fp32 checkpoint"]
    print(f"\n## {size}: {built['parameters'] / 1e6:.1f}M parameters "
          f"(packed ternary layers: {built['bits_per_weight_ternary_packed']:.3f} bits/weight)\n")
    print("| engine | threads | file MB | size vs fp32 | prefill tok/s | x torch | decode tok/s | x torch | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    packed = built["bytes"]["packed"]
    print(f"| packed checkpoint | | {packed / 1e6:.2f} | {fp32_bytes / packed:.1f}x smaller | | | | | |")
    for name, t in timings.items():
        engine, threads = name.rsplit("@", 1)
        key = "torch-fp32 checkpoint" if engine.startswith("torch") else engine.removesuffix("-cuda")
        size_bytes = built["bytes"][key]
        print(f"| {engine} | {threads} | {size_bytes / 1e6:.2f} | {fp32_bytes / size_bytes:.1f}x smaller | "
              f"{t['prefill_tokens_per_s']:.0f} | {t['prefill_tokens_per_s'] / best['prefill_tokens_per_s']:.2f} | "
              f"{t['decode_tokens_per_s']:.1f} | {t['decode_tokens_per_s'] / best['decode_tokens_per_s']:.2f} | "
              f"{t['peak_rss_mb']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="demo,100m", help="comma-separated: " + ", ".join(SIZES))
    parser.add_argument("--prompt", type=int, default=32, help="prefill length in tokens")
    parser.add_argument("--decode", type=int, default=16, help="tokens decoded one at a time")
    parser.add_argument("--repeats", type=int, default=1, help="timed rounds (best kept), after one warm-up")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts; each engine runs at each")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.folder, args.prompt, args.decode, args.repeats, int(args.threads))))
        return
    thread_counts = [int(n) for n in args.threads.split(",")]
    os.environ.setdefault("OMP_NUM_THREADS", str(max(thread_counts)))
    print(f"prompt {args.prompt} tokens, decode {args.decode} tokens, threads {thread_counts}, best of {args.repeats}")
    everything = {}
    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory(prefix=f"bitzero-bench-{size}-") as tmp:
            built = build(size, Path(tmp))
            timings = {
                f"{engine}@{threads}": run_worker(engine, threads, Path(tmp), args)
                for engine in engines()
                for threads in thread_counts
            }
        print_table(size, built, timings)
        everything[size] = {"build": built, "timings": timings}
    if args.json:
        args.json.write_text(json.dumps(everything, indent=2))


if __name__ == "__main__":
    main()
