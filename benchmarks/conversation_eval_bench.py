"""The conversation eval on one bundle under candidate decoding settings: the table the defaults
were chosen from (bitzero.companion.decoding, Settings).

    python benchmarks/conversation_eval_bench.py BUNDLE --embedder DIR [--emotion CLASSIFIER.json] \
        --candidate '{"temperature": 0.3}' --candidate '{"temperature": 0.3, "max_sentences": 3}'

Each candidate goes over the service's defaults; ``--before`` adds the decoding the service had
before the eval (temperature 0.7, top-p 1, 256 tokens, only the earlier replies' 4-grams barred;
the emotion opening it then glued before replies is gone from the code). ``--raw`` adds the bare
model as the field's stock runtime serves it (client turns only, greedy, 256 tokens: the on-topic
reference). ``--transcripts`` writes every reply.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bitzero.companion.conversation_eval import eval_verdict, figures, load_scenarios, transcript
from bitzero.companion.embeddings import OnnxEmbedder
from bitzero.companion.emotion import EmotionClassifier, EmotionDetector
from bitzero.service.model import load_models
from bitzero.service.rehearsal import evaluate_bundle, rehearse_raw
from bitzero.serving import sampling

BEFORE = {"temperature": 0.7, "top_p": 1.0, "max_sentences": 0, "max_tokens": 256}
COLUMNS = ("loop_rate", "garbage_rate", "empty_rate", "cut_off_rate", "recall_rate", "name_claim_rate", "like_claim_rate",
           "speaks_of_user_rate", "wrong_tone_rate", "echo_rate", "on_topic", "words_median")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--embedder", type=Path, required=True)
    parser.add_argument("--emotion", type=Path, help="an emotion classifier JSON (else the bundle's, if any)")
    parser.add_argument("--candidate", action="append", default=[], help="decoding settings as JSON")
    parser.add_argument("--before", action="store_true", help="also the service before the eval")
    parser.add_argument("--seeds", type=int, default=1, help="sampling seeds per candidate (figures averaged)")
    parser.add_argument("--raw", action="store_true", help="also the bare model with stock settings")
    parser.add_argument("--transcripts", type=Path)
    args = parser.parse_args()
    detector = EmotionDetector(EmotionClassifier.load(args.emotion)) if args.emotion else None
    rows, transcripts = [], {}
    runs = [("before", BEFORE)] if args.before else []
    runs += [(c, json.loads(c)) for c in args.candidate]
    learn = sampling.RepeatGuard.learn
    if args.raw:
        embedder = OnnxEmbedder(args.embedder, threads=1)
        exchanges = rehearse_raw(load_models(args.bundle).champion, load_scenarios())
        raw = figures(exchanges, embedder)
        rows.append(("raw model, stock settings", {k: raw[k] for k in COLUMNS}, eval_verdict(raw)[0]))
        transcripts["raw"] = [transcript(exchanges)]
        print(f"{'raw':60s} " + " ".join(f"{k}={raw[k]}" for k in COLUMNS), flush=True)
    for name, decoding in runs:
        sampling.RepeatGuard.learn = (lambda self, reply: None) if name == "before" else learn  # type: ignore[method-assign]
        results = [evaluate_bundle(args.bundle, args.embedder, decoding=decoding, detector=detector, seed=seed)
                   for seed in range(args.seeds)]
        averaged = {k: round(sum(r["figures"][k] for r in results) / len(results), 3) for k in COLUMNS}
        rows.append((name, averaged, all(r["passed"] for r in results)))
        transcripts[name] = [r["transcript"] for r in results]
        print(f"{name:60s} " + " ".join(f"{k}={averaged[k]}" for k in COLUMNS) + f" passed={rows[-1][2]}", flush=True)
    print("\n| settings | " + " | ".join(COLUMNS) + " | passes |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for name, averaged, passed in rows:
        print(f"| `{name}` | " + " | ".join(str(averaged[k]) for k in COLUMNS) + f" | {passed} |")
    if args.transcripts:
        args.transcripts.write_text(json.dumps(transcripts, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
