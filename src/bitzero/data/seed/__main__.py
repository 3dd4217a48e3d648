"""``python -m bitzero.data.seed --out data/01_raw/seed.jsonl --seed 0``: write the seed dataset."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from bitzero.data.records import record_text, write_jsonl
from bitzero.data.seed import DEFAULT_COUNT, generate_seed_records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bitzero.data.seed", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="JSON Lines file to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="number of records")
    args = parser.parse_args(argv)
    records = generate_seed_records(args.count, args.seed)
    write_jsonl(args.out, records)
    kinds = Counter(record["type"] for record in records)
    chars = sum(len(record_text(record)) for record in records)
    print(f"wrote {len(records)} records to {args.out} ({args.out.stat().st_size} bytes, {chars} characters of text): "
          + ", ".join(f"{kind} {n}" for kind, n in kinds.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
