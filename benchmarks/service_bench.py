"""Companion service figures: chat latency (whole reply, time to first token), memory search at
10,000 memories, each with 1 and 16 concurrent clients, and memory retrieval quality; and many
users at once on real bundles: aggregate tokens/s and p95 time to first token at 1, 4 and 16
concurrent clients with batched decoding, ratios against 1 client in the same run, and 16 clients
on the one-reply-at-a-time path beside them; and the prefix cache's time to first token.

The server is uvicorn on 127.0.0.1 in this process (a thread); clients are httpx threads.
Chat runs against the deterministic fake model (the service's own overhead: database, embedding,
memory, prompt) and against a real exported bundle (--bundle, or a tiny random one exported
here with torch), so the model's share is visible as a ratio. Memory search at 10,000 memories
is compared with the bare numpy scoring it wraps. Retrieval quality: a labelled set of one
user's memories and questions, hit@1/hit@3 for Generative Agents' weights against relevance only.
Figures only, no assertions. Usage: python benchmarks/service_bench.py [--bundle DIR] [--requests N]
[--concurrency BUNDLE_DIR ...] [--only-concurrency] [--chats N]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import httpx
import numpy as np
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bitzero.companion.embeddings import ensure_embedder
from bitzero.companion.memory import WEIGHTS, MemoryIndex, StoredMemory, rank, retrieval_scores
from bitzero.service.app import create_app
from bitzero.service.db import transaction
from bitzero.service.settings import Settings
from bitzero.service.store import new_id
from bitzero.service.tables import Memory, utcnow
from tests.service.conftest import EMBEDDER_CACHE, FakeModel

# (memory, importance, hours since last access, a question it answers)
LABELLED = [
    ("The user's name is Ana.", 9, 300, "what is my name"),
    ("The user lives in Porto.", 7, 20, "which city do I live in"),
    ("The user works as a nurse.", 7, 100, "what is my job"),
    ("The user loves green tea.", 6, 5, "what do I like to drink"),
    ("The user hates horror movies.", 6, 200, "should I watch a scary film tonight"),
    ("The user has a dog named Rex.", 5, 50, "what is my pet called"),
    ("The user's favourite colour is teal.", 6, 400, "which colour do I like most"),
    ("The user is 34 years old.", 6, 150, "how old am I"),
    ("The user plays the violin.", 5, 30, "what instrument do I play"),
    ("The user is allergic to peanuts.", 8, 500, "can I eat a peanut butter sandwich"),
    ("The user's birthday is on 3 May.", 7, 250, "when is my birthday"),
    ("The user enjoys hiking in the mountains.", 5, 10, "what do I do on weekends outdoors"),
    ("The user is learning Japanese.", 5, 80, "which language am I studying"),
    ("The user has two sisters.", 5, 120, "how many siblings do I have"),
    ("The user felt anxious about an exam last week.", 4, 160, "how was I feeling about my test"),
    ("The user prefers working at night.", 5, 60, "when do I work best"),
    ("The user drives an old blue Volvo.", 4, 220, "what car do I have"),
    ("The user is vegetarian.", 7, 350, "recommend me a dinner recipe"),
    ("The user supports FC Porto.", 5, 90, "which football team do I follow"),
    ("The user grew up in Brazil.", 6, 450, "where did I spend my childhood"),
    ("The user dislikes crowded places.", 5, 40, "should I go to the festival"),
    ("The user reads science fiction novels.", 5, 70, "what kind of books do I read"),
    ("The user is afraid of flying.", 6, 300, "should I take a plane for my holiday"),
    ("The user's partner is called Luis.", 8, 180, "who is my partner"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, settings: Settings, **parts: object) -> None:
        self.port = _free_port()
        self.app = create_app(Settings(**{**settings.__dict__, "port": self.port}), **parts)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def chat_once(url: str, index: int, max_tokens: int) -> tuple[float, float, int]:
    """(whole reply seconds, time to first content seconds, completion tokens) of one streamed chat."""
    body = {"messages": [{"role": "user", "content": f"I like topic number {index}. Tell me about it."}],
            "stream": True, "max_tokens": max_tokens, "temperature": 0.7, "seed": index,
            "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first, tokens = None, 0
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
                first = first or time.perf_counter() - start
            if line.startswith('data: {') and '"usage":{' in line:
                tokens = json.loads(line[6:])["usage"]["completion_tokens"]
    return time.perf_counter() - start, first or time.perf_counter() - start, tokens


def chat_figures(url: str, requests: int, clients: int, max_tokens: int) -> dict[str, float]:
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda i: chat_once(url, i, max_tokens), range(requests)))
    wall = time.perf_counter() - start
    whole, first = [r[0] for r in results], [r[1] for r in results]
    return {"p50": percentile(whole, 50), "p95": percentile(whole, 95), "ttft_p50": percentile(first, 50),
            "ttft_p95": percentile(first, 95), "rps": requests / wall, "tokens_s": sum(r[2] for r in results) / wall}


def concurrency_table(bundles: list[Path], base: Settings, work: Path, embedder, threads: int, requests: int,
                      max_tokens: int) -> None:
    """The same ``requests`` chats (same messages, same seeds: the same replies) from 1, 4 and 16
    concurrent clients, through the runtime alone and through the service, batched (16 slots);
    then 16 clients on the service with one slot (the path before batching)."""
    from bitzero.service.app import GENERATION_SLOTS
    from bitzero.service.model import load_models

    # Every reply runs to max_tokens or the model's end: no sentence stop, so clients compare alike.
    settings = Settings(**{**base.__dict__, "max_sentences": 0, "max_waiting_chats": 64})
    print(f"\nMany users at once: the same {requests} chats from 1, 4 and 16 clients, max_tokens={max_tokens}, "
          f"{threads} onnxruntime thread(s); tok/s = completion tokens of all chats / wall time (prefill included)")
    print(f"  {'bundle':24s} {'through':8s} {'slots':>5s} {'clients':>7s} {'tok/s':>7s} {'x 1 client':>10s} {'ttft50':>7s} "
          f"{'ttft95':>7s} {'p95 reply':>9s}")
    for bundle in bundles:
        loaded = {slots: load_models(bundle, threads=threads, slots=slots) for slots in (GENERATION_SLOTS, 1)}
        for where in ("runtime", "service"):
            baseline = None
            for slots, clients in [(GENERATION_SLOTS, 1), (GENERATION_SLOTS, 4), (GENERATION_SLOTS, 16), (1, 16)]:
                models = loaded[slots]
                if where == "runtime":
                    if slots == 1:  # the runtime does not queue: 16 unbatched threads would only share the cores
                        continue
                    f = runtime_figures(models.champion.model, requests, clients, max_tokens)
                else:
                    tuned = Settings(**{**settings.__dict__,
                                        "database_url": f"sqlite:///{work}/many-{bundle.name}-{slots}-{clients}.db"})
                    with Server(tuned, models=models, embedder=embedder) as url:
                        chat_once(url, 10_000, 4)  # warm-up
                        f = chat_figures(url, requests, clients, max_tokens)
                baseline = baseline or f["tokens_s"]
                print(f"  {models.champion.id:24s} {where:8s} {slots:5d} {clients:7d} {f['tokens_s']:7.1f} "
                      f"{f['tokens_s'] / baseline:9.2f}x {f['ttft_p50']:7.2f} {f['ttft_p95']:7.2f} {f['p95']:9.2f}",
                      flush=True)


EVERYDAY = ["Hi, my name is Ada and I love hiking.", "I just got the job I wanted!", "I'm worried about my exam tomorrow.",
            "My dog died yesterday and I feel awful.", "Can you give me some advice for a calm evening?",
            "What are you, exactly?", "Nice weather today, isn't it?", "What should I cook tonight?"]


def prefix_cache_figures(bundle: Path, threads: int) -> None:
    """Time to first token of everyday messages one after another on the batched runtime: after the
    companion's persona (its keys and values come from the prefix cache) against after the persona
    behind a different word each time (3-4 tokens more, nothing to reuse). The real prompts carry the
    emotion note and memories after the persona: the same tokens saved, more run."""
    from bitzero.companion.context import DEFAULT_PERSONA
    from bitzero.serving.runtime import BundleRuntime
    from bitzero.serving.sampling import Sampling

    runtime = BundleRuntime.load(bundle, slots=2, threads=threads)
    print(f"\nPrefix cache, {runtime.model_id}: time to first token of {len(EVERYDAY)} messages, one after another")
    for label, system in [("the companion's persona", lambda i: DEFAULT_PERSONA),
                          ("the persona after a different word each time", lambda i: f"Chat {i}. {DEFAULT_PERSONA}")]:
        prompts = [runtime.tokenizer.encode_chat([{"role": "system", "content": system(i)}, {"role": "user", "content": m}],
                                                 add_generation_prompt=True) for i, m in enumerate(EVERYDAY)]
        seconds = []
        for _ in range(2):  # the first round warms up
            reused = runtime.reused_prompt_tokens
            for prompt in prompts:
                start = time.perf_counter()
                next(iter(runtime.token_ids(prompt, max_tokens=1, sampling=Sampling())))
                seconds.append(time.perf_counter() - start)
        print(f"  {label:50s} {np.mean(seconds[len(prompts):]) * 1000:6.0f} ms  (prompts of {np.mean([len(p) for p in prompts]):.0f} "
              f"tokens; {(runtime.reused_prompt_tokens - reused) / len(prompts):.0f} a prompt taken from the cache)")


def runtime_figures(model, requests: int, clients: int, max_tokens: int) -> dict[str, float]:
    """chat_figures' numbers for the runtime alone (no HTTP, database or embedding): the chat
    template around the same messages, the same sampling."""
    from bitzero.serving.sampling import Sampling

    def once(index: int) -> tuple[float, float, int]:
        prompt = model.tokenizer.encode_chat([{"role": "user", "content": f"I like topic number {index}. Tell me "
                                               "about it."}], add_generation_prompt=True)
        start, first, tokens = time.perf_counter(), None, 0
        sampling = Sampling(temperature=0.7, top_p=0.9, repeat_ngram=4, seed=index)  # the service's defaults
        for _ in model.token_ids(prompt, max_tokens=max_tokens, sampling=sampling):
            first = first or time.perf_counter() - start
            tokens += 1
        return time.perf_counter() - start, first or 0.0, tokens

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(once, range(requests)))
    wall = time.perf_counter() - start
    whole, first = [r[0] for r in results], [r[1] for r in results]
    return {"p95": percentile(whole, 95), "ttft_p50": percentile(first, 50), "ttft_p95": percentile(first, 95),
            "tokens_s": sum(r[2] for r in results) / wall}


def fill_memories(app, embedder, count: int) -> None:
    """One user with ``count`` memories: the labelled ones plus random unit vectors as filler."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(count, embedder.dimensions)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = utcnow()
    with transaction(app.state.sessions) as session:
        from bitzero.service.store import UserData

        UserData(session, "local").privacy()
        session.add_all(Memory(id=new_id(), user_id="local", category="note", slot=None, content=f"filler {i}",
                               importance=float(rng.integers(1, 10)), embedding=vectors[i].tobytes(),
                               created_at=now, last_accessed=now - timedelta(hours=float(rng.integers(0, 1000))))
                        for i in range(count))


def search_figures(url: str, requests: int, clients: int) -> dict[str, float]:
    def once(i: int) -> float:
        start = time.perf_counter()
        response = httpx.get(f"{url}/v1/memories/search", params={"q": f"question {i}", "limit": 5}, timeout=120)
        response.raise_for_status()
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        times = list(pool.map(once, range(requests)))
    return {"p50": percentile(times, 50), "p95": percentile(times, 95), "rps": requests / (time.perf_counter() - start)}


def retrieval_quality(embedder) -> dict[str, tuple[float, float]]:
    now = utcnow()
    contents = [m for m, _, _, _ in LABELLED]
    vectors = embedder.encode(contents)
    memories = MemoryIndex.build([StoredMemory(str(i), "fact", None, c, imp, vectors[i], now - timedelta(hours=h))
                                  for i, (c, imp, h, _) in enumerate(LABELLED)])
    queries = embedder.encode([q for _, _, _, q in LABELLED])
    out = {}
    for name, weights in [("relevance only", (0.0, 0.0, 1.0)), ("Generative Agents 1/1/1", (1.0, 1.0, 1.0)),
                          ("BitZero 1/1/3 (default)", WEIGHTS)]:
        hits1 = hits3 = 0
        for i, query in enumerate(queries):
            scores = retrieval_scores(query, memories, now, weights)
            order = list(np.argsort(-scores, kind="stable"))
            hits1 += order[0] == i
            hits3 += i in order[:3]
        out[name] = (hits1 / len(queries), hits3 / len(queries))
    return out


def tiny_bundle(folder: Path) -> Path:
    """A tiny random model exported like the pipeline does (needs torch; benchmark-only)."""
    import torch

    from bitzero.export.exporter import export_bundle, held_out_inputs
    from tests.tiny import tiny_model, tiny_tokenizer

    torch.set_num_threads(1)
    tokenizer = tiny_tokenizer()
    tokenizer_path = tokenizer.save(folder / "tokenizer.json")
    model = tiny_model(tokenizer, quantized=True, n_layer=4, n_embd=128, ffn_hidden=384, block_size=2048)
    held = held_out_inputs([{"conversation": [{"role": "user", "content": "hello"},
                                              {"role": "assistant", "content": "hi!"}]}], tokenizer, 256, 1, 1)
    export_bundle(model, tokenizer_path, folder / "bundle", held, variants=("nbits",),
                  greedy_tokens=4)
    return folder / "bundle"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="an exported bundle (default: a tiny random one)")
    parser.add_argument("--requests", type=int, default=32, help="chat requests per configuration")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--emotion", type=Path, help="an emotion classifier to include (bitzero emotion train)")
    parser.add_argument("--concurrency", type=Path, nargs="*", default=[],
                        help="real bundles for the 1/4/16-client table (e.g. data/06_models/bundles/student)")
    parser.add_argument("--only-concurrency", action="store_true", help="only the 1/4/16-client table")
    parser.add_argument("--chats", type=int, default=16, help="chats per row of the 1/4/16-client table")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per model")
    args = parser.parse_args()
    embedder = ensure_embedder(EMBEDDER_CACHE)
    work = Path(tempfile.mkdtemp(prefix="bitzero-bench-"))
    base = Settings(database_url=f"sqlite:///{work}/bench.db", embedder=EMBEDDER_CACHE, bundles=work / "none",
                    rate_limit_per_minute=1_000_000, feedback_export=work / "feedback.jsonl",
                    max_chats_per_user=64,  # the clients all act as the local user; each stands for one user
                    emotion_model=args.emotion or work / "no-emotion.json")

    if args.concurrency:
        concurrency_table(args.concurrency, base, work, embedder, args.threads, args.chats, args.max_tokens)
        for bundle in args.concurrency:
            prefix_cache_figures(bundle, args.threads)
    if args.only_concurrency:
        return
    print("Retrieval quality on", len(LABELLED), "labelled questions (hit@1, hit@3):")
    for name, (hit1, hit3) in retrieval_quality(embedder).items():
        print(f"  {name:26s} {hit1:.2f}  {hit3:.2f}")

    print(f"\nChat, {args.requests} streamed requests, max_tokens={args.max_tokens} (seconds; rps = requests/s):")
    bundle = args.bundle or tiny_bundle(work)
    from bitzero.serving.runtime import BundleRuntime

    real = BundleRuntime.load(bundle, "nbits", providers=["CPUExecutionProvider"], threads=1)
    rows = {}
    for label, model in [("fake model", FakeModel(context_length=real.context_length)), (f"bundle {real.model_id}", real)]:
        for clients in (1, 16):
            settings = Settings(**{**base.__dict__, "database_url": f"sqlite:///{work}/chat-{len(rows)}.db"})
            with Server(settings, model=model, embedder=embedder) as url:
                chat_once(url, 10_000, 4)  # warm-up
                rows[(label, clients)] = chat_figures(url, args.requests, clients, args.max_tokens)
    print(f"  {'model':28s} {'clients':>7s} {'p50':>7s} {'p95':>7s} {'ttft50':>7s} {'ttft95':>7s} {'rps':>6s}")
    for (label, clients), f in rows.items():
        print(f"  {label:28s} {clients:7d} {f['p50']:7.3f} {f['p95']:7.3f} {f['ttft_p50']:7.3f} "
              f"{f['ttft_p95']:7.3f} {f['rps']:6.2f}")
    fake1, real1 = rows[("fake model", 1)], rows[(f"bundle {real.model_id}", 1)]
    print(f"  the model's share of a 1-client reply: {1 - fake1['p50'] / real1['p50']:.0%} "
          f"(service overhead p50 {fake1['p50'] * 1000:.0f} ms)")

    print(f"\nMemory search, one user with {args.memories} memories (seconds):")
    settings = Settings(**{**base.__dict__, "database_url": f"sqlite:///{work}/search.db"})
    server = Server(settings, model=FakeModel(), embedder=embedder)
    with server as url:
        fill_memories(server.app, embedder, args.memories)
        search_figures(url, 2, 1)  # warm-up
        for clients in (1, 16):
            f = search_figures(url, 32, clients)
            print(f"  {clients:2d} client(s): p50 {f['p50']:.3f}  p95 {f['p95']:.3f}  rps {f['rps']:.1f}")
    vectors = np.random.default_rng(1).normal(size=(args.memories, embedder.dimensions)).astype(np.float32)
    now = utcnow()
    memories = MemoryIndex.build([StoredMemory(str(i), "note", None, "", 5.0, vectors[i], now)
                                  for i in range(args.memories)])
    query = embedder.encode(["question"])[0]
    start = time.perf_counter()
    for _ in range(10):
        rank(query, memories, now, 5)
    bare = (time.perf_counter() - start) / 10
    embed_start = time.perf_counter()
    for _ in range(10):
        embedder.encode(["question about something"])
    embed = (time.perf_counter() - embed_start) / 10
    print(f"  baseline: bare scoring {bare * 1000:.1f} ms + query embedding {embed * 1000:.1f} ms per search")


if __name__ == "__main__":
    main()
