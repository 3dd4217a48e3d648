"""How many self-play programs per second the sandbox verifies, against one interpreter each.

Runs a batch of small deduction-style programs (the kind Absolute Zero proposes: a function and
a call) through `Sandbox.run` one by one, through `run_many` on one and on several workers, and
through `check_deterministic_many` (two runs each); then spawns a fresh bare `python -I -S`
per program (no limits at all, so a lower bound on that design's cost) for a sample, and prints
a table. Figures only, no assertions: usage `python benchmarks/sandbox_bench.py [--programs N]`.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time

from bitzero.selfplay import Sandbox, check_program

TEMPLATES = [
    ("def f(xs):\n    return sorted(xs, reverse=True)[:{k}]", "f({ints})"),
    ("def f(s):\n    return ''.join(c.upper() if i % {k} == 0 else c for i, c in enumerate(s))", "f({word!r})"),
    ("from collections import Counter\ndef f(s):\n    return Counter(s).most_common({k})", "f({word!r})"),
    ("def f(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a", "f({n})"),
    ("def f(xs):\n    return {{x: x ** 2 % {k} for x in xs}}", "f({ints})"),
    ("def f(n):\n    return n if n < 2 else f(n - 1) + f(n - 2)", "f({small})"),
    ("import itertools\ndef f(xs):\n    return list(itertools.accumulate(xs))[-{k}:]", "f({ints})"),
    ("def f(s, k):\n    words = s.split()\n    return ' '.join(w[::-1] for w in words[:k])", "f({sentence!r}, {k})"),
    ("import math\ndef f(xs):\n    return [math.gcd(a, b) for a, b in zip(xs, xs[1:])]", "f({ints})"),
    ("def f(xs):\n    seen = set()\n    out = []\n    for x in xs:\n        if x not in seen:\n"
     "            seen.add(x)\n            out.append(x)\n    return tuple(out)", "f({ints})"),
    ("import re\ndef f(s):\n    return re.sub(r'[aeiou]', '', s).count('{ch}')", "f({sentence!r})"),
    ("def f(n):\n    return [i for i in range(2, n) if all(i % d for d in range(2, int(i ** 0.5) + 1))]", "f({n})"),
]
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def make_programs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """A reproducible mix of small deduction-style (program, call) pairs."""
    rng = random.Random(seed)
    batch = []
    for i in range(count):
        program, call = TEMPLATES[i % len(TEMPLATES)]
        fields = {
            "k": rng.randint(1, 5),
            "n": rng.randint(5, 60),
            "small": rng.randint(5, 15),
            "ints": [rng.randint(-50, 50) for _ in range(rng.randint(3, 12))],
            "word": rng.choice(WORDS) * rng.randint(1, 3),
            "sentence": " ".join(rng.choices(WORDS, k=rng.randint(2, 8))),
            "ch": rng.choice("bcdfgh"),
        }
        batch.append((program.format(**fields), call.format(**fields)))
    return batch


def timed(label: str, count: int, action) -> tuple[str, int, float]:
    start = time.perf_counter()
    results = action() or []
    seconds = time.perf_counter() - start
    failed = [r.reason for r in results if not r.ok]
    if failed:
        print(f"  note: {label}: {len(failed)} failed, e.g. {failed[0]}")
    return label, count, seconds


def check_all(batch: list[tuple[str, str]]) -> None:
    for program, call in batch:
        check_program(program, call)


def fresh_interpreter(batch: list[tuple[str, str]]) -> None:
    """One bare isolated interpreter per program: the design a zygote avoids."""
    runner = "import sys\nns = {}\nexec(sys.argv[1], ns)\nprint(repr(eval(sys.argv[2], ns)))"
    for program, call in batch:
        subprocess.run([sys.executable, "-I", "-S", "-c", runner, program, call], capture_output=True, env={}, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--baseline-sample", type=int, default=100)
    args = parser.parse_args()
    batch = make_programs(args.programs)
    rows = [timed("AST allow-list check only", len(batch), lambda: check_all(batch))]
    with Sandbox(workers=1) as box:
        box.run(*batch[0])  # start the worker outside the timing
        isolation = f"network: {box.network}; drop to uid: {box.drop_uid}"
        rows.append(timed("Sandbox.run, one by one", len(batch), lambda: [box.run(p, c) for p, c in batch]))
        rows.append(timed("run_many, 1 worker", len(batch), lambda: box.run_many(batch)))
    with Sandbox(workers=args.workers) as box:
        box.run_many(batch[: args.workers * 2])
        box.check_deterministic_many(batch[: args.workers * 2])
        rows.append(timed(f"run_many, {args.workers} workers", len(batch), lambda: box.run_many(batch)))
        rows.append(timed(
            f"check_deterministic_many, {args.workers}+{args.workers} workers", len(batch),
            lambda: box.check_deterministic_many(batch),
        ))
    sample = batch[: args.baseline_sample]
    rows.append(timed("fresh `python -I -S` per program (no limits)", len(sample), lambda: fresh_interpreter(sample)))

    baseline = rows[-1][1] / rows[-1][2]
    print(f"\n{args.programs} programs, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; {isolation}")
    print(f"{'mode':<50} {'programs':>8} {'seconds':>8} {'prog/s':>9} {'ms/prog':>8} {'x fresh':>8}")
    for label, count, seconds in rows:
        rate = count / seconds
        print(f"{label:<50} {count:>8} {seconds:>8.3f} {rate:>9.1f} {1000 / rate:>8.2f} {rate / baseline:>8.1f}")


if __name__ == "__main__":
    main()
