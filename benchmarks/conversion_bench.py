"""Conversion ladder on the real teacher (SmolLM2-135M-Instruct), no training: held-out NLL, minutes
and bits per weight per rung, then the converted student's greedy replies to everyday messages.

Calibration and held-out conversations are Synthetic-Persona-Chat validation rows (the first
``--calibration`` calibrate, the next ``--heldout`` are scored, NLL per assistant token).

    nice python -u benchmarks/conversion_bench.py --threads 2 --scale row --critical 0.1

Measured (2-core machine shared with other jobs, load ~7; 16 calibration / 8 held-out
conversations of 384 tokens, per-row scales, 10% critical rows): teacher 1.86; absmean 17.12;
fitted scales 9.32; GPTQ-style rounding 4.72; salient critical rows 4.45; 5.05 bits per weight;
block-wise reconstruction (a 120 s budget, lr 0.003, pull 0) 4.33.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bitzero.data.readers import read_persona_chat
from bitzero.model.pretrained import ternary_student
from bitzero.train.blockwise import BlockSettings
from bitzero.train.conversion import LadderSettings, convert
from bitzero.train.examples import records_to_examples
from bitzero.train.heldout import held_out_nll
from tests.real_teacher import real_teacher

PERSONA_CHAT = Path("data/01_raw/synthetic_persona_chat/Synthetic-Persona-Chat_valid.csv")
MESSAGES = [
    "Hi! How are you today?",
    "I had a rough day at work and I feel tired.",
    "Can you suggest something easy to cook for dinner?",
    "What is a good way to start exercising?",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scale", choices=("tensor", "row"), default="row")
    parser.add_argument("--critical", default="0.1", help="critical_ratio: a fraction or 'adaptive'")
    parser.add_argument("--calibration", type=int, default=16)
    parser.add_argument("--heldout", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=40)
    parser.add_argument("--block-seconds", type=float, default=90.0, help="block-wise reconstruction's budget")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    begun = time.perf_counter()
    teacher, tokenizer = real_teacher()
    records, _ = read_persona_chat(PERSONA_CHAT, limit=args.calibration + args.heldout)
    examples = records_to_examples(records, tokenizer)
    calibration, heldout = examples[: args.calibration], examples[args.calibration :]

    def nll(model: torch.nn.Module) -> float:
        value = float(held_out_nll(model, {"persona_chat": heldout}, 4, args.seq_len, tokenizer.pad_id)["overall"])
        print(json.dumps({"held_out_nll": value, "at_s": round(time.perf_counter() - begun)}), flush=True)
        return value

    critical = args.critical if args.critical == "adaptive" else float(args.critical)
    nll(teacher)  # the teacher's
    student = ternary_student(teacher, critical, per_row_scale=args.scale == "row")
    started = time.perf_counter()
    settings = LadderSettings(calibration_conversations=args.calibration, seq_len=args.seq_len,
                              blockwise=BlockSettings(seconds=args.block_seconds))
    table = convert(student, calibration, nll, settings)
    for row in table:
        print(json.dumps(row))
    print(json.dumps({"ladder_minutes": (time.perf_counter() - started) / 60}))
    student.eval()
    for message in MESSAGES:
        prompt = tokenizer.encode_chat([{"role": "user", "content": message}], add_generation_prompt=True)
        reply = student.generate(prompt, args.new_tokens, stop_ids=tokenizer.stop_ids)
        print(json.dumps({"user": message, "student": tokenizer.decode(reply)}))


if __name__ == "__main__":
    main()
