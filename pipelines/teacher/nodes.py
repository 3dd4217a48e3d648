"""Nodes of the teacher stage: import the pretrained checkpoint, try it once, report."""

from __future__ import annotations

import logging
import time
from typing import Any

import mlflow
import torch

from bitzero.model import BitZeroLM
from bitzero.model.pretrained import import_pretrained
from bitzero.text import Tokenizer
from pipelines.tracking import report_metrics

log = logging.getLogger(__name__)


def import_teacher(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The checkpoint (weights + config + tokenizer), its tokenizer alone, and the facts of the import."""
    started = time.perf_counter()
    model, tokenizer, facts = import_pretrained(params["source"], context=params["context"])
    facts["import_s"] = time.perf_counter() - started
    run = mlflow.active_run()
    if run is not None:
        facts["mlflow_run_id"] = run.info.run_id
    checkpoint = {"model": model, "tokenizer": tokenizer, "metadata": {"role": "teacher", **facts}}
    return checkpoint, tokenizer.to_dict(), facts


def try_teacher(
    model: BitZeroLM, tokenizer_data: dict[str, Any], facts: dict[str, Any], params: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """One greedy reply to the sample prompt, so the report shows what the teacher sounds like."""
    tokenizer = Tokenizer.from_dict(tokenizer_data)
    torch.set_num_threads(params["threads"])
    chat = [{"role": "user", "content": params["sample_prompt"]}]
    prompt = tokenizer.encode_chat(chat, add_generation_prompt=True)
    started = time.perf_counter()
    reply = model.generate(prompt, params["sample_tokens"], stop_ids=tokenizer.stop_ids)
    seconds = time.perf_counter() - started
    log.info("teacher says: %s", tokenizer.decode(reply, skip_special=True))
    report = {
        **facts,
        "config": model.config.to_dict(),
        "vocab_size": tokenizer.vocab_size,
        "sample": {"prompt": params["sample_prompt"], "reply": tokenizer.decode(reply, skip_special=True),
                   "decode_tokens_per_s": len(reply) / seconds},
    }
    return report, report_metrics({k: v for k, v in report.items() if k != "config"})
