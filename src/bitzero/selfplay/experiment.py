"""The self-play stage as an experiment: cold start, warm-up, two equal-time arms, held-out rates.

Held-out tasks come from the generator under a separate seed and their keys are reserved in every
buffer, so no held-out task is ever trained on. The stage's model is the arm with PPO; the arm
without PPO (verifier-only learning, same wall time, same start) is the ablation, reported
whichever way it falls.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from statistics import fmean
from typing import Any

import torch

from bitzero.model import BitZeroLM
from bitzero.selfplay.agent import Agent
from bitzero.selfplay.buffer import TaskBuffer
from bitzero.selfplay.config import SelfPlayConfig
from bitzero.selfplay.evaluate import solve_rates
from bitzero.selfplay.generator import LEVELS, generate_tasks
from bitzero.selfplay.learn import proposer_examples, sft_steps, solver_examples
from bitzero.selfplay.loop import ArmResult, MetricsFn, SelfPlay, _trainer
from bitzero.selfplay.sandbox import Sandbox
from bitzero.selfplay.tasks import Task
from bitzero.selfplay.verify import Verifier
from bitzero.text import Tokenizer


@dataclass
class Outcome:
    model: BitZeroLM
    buffer: list[dict[str, Any]]
    heldout: list[dict[str, Any]]
    report: dict[str, Any]


def label_all(verifier: Verifier, tasks: list[Task]) -> list[Task]:
    """The tasks the executor accepts, labelled with their outputs."""
    return [t for t in verifier.label(tasks)[0] if t is not None]


def run_experiment(
    model: BitZeroLM, tokenizer: Tokenizer, cfg: SelfPlayConfig, on_metrics: MetricsFn | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Outcome:
    """Run the whole stage on `model` (left untouched) and return the self-played model and report."""
    started = time.perf_counter()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    with Sandbox(timeout_s=cfg.sandbox_timeout_s, memory_mb=cfg.sandbox_memory_mb, workers=cfg.sandbox_workers) as box:
        verifier = Verifier(box, cfg.max_output_chars)
        heldout = label_all(verifier, generate_tasks(
            cfg.heldout_per_cell, cfg.heldout_seed, cfg.kinds, cfg.heldout_levels, induction_pairs=cfg.induction_pairs))
        reserved = {t.key for t in heldout}
        seeds = label_all(verifier, generate_tasks(
            cfg.seed_tasks_per_cell, cfg.seed, cfg.kinds, LEVELS, exclude=reserved, induction_pairs=cfg.induction_pairs))
        buffer = TaskBuffer(seeds, reserved=reserved)
        log(f"held-out {len(heldout)} tasks, cold-start buffer {len(buffer)} tasks")

        warm = copy.deepcopy(model)
        agent = Agent(warm, tokenizer, cfg.rollout_batch)
        trainer = _trainer(warm, cfg, cfg.sft_lr)

        def evaluate(m: BitZeroLM) -> dict[str, Any]:
            return solve_rates(Agent(m, tokenizer, cfg.rollout_batch), verifier, heldout, cfg.answer_tokens)

        before = evaluate(warm)
        log(f"held-out before: {before['overall']['rate']:.3f}")

        r = Random(cfg.seed)
        tasks = [t for kind in cfg.kinds for t in buffer.by_kind[kind] if t.difficulty in cfg.warmup_levels]
        examples = solver_examples(agent, tasks)
        per_kind = round(cfg.proposer_sft_fraction * len(examples) / len(cfg.kinds))
        for kind in cfg.kinds:
            examples += proposer_examples(agent, buffer, kind, per_kind, cfg.references, r, cfg.proposal_tokens)
        warmup = sft_steps(trainer, examples, cfg.warmup_max_steps, cfg.sft_batch_size, r, cfg.warmup_seconds, tokenizer.pad_id)
        after_warmup = evaluate(warm)
        log(f"warm-up: {warmup['steps']:.0f} steps, held-out {after_warmup['overall']['rate']:.3f}")

        arms: dict[str, ArmResult] = {}
        buffers: dict[str, TaskBuffer] = {}
        for name, use_ppo in (("ppo", True), ("sft_only", False)) if cfg.ablation else (("ppo", True),):
            buffers[name] = copy.deepcopy(buffer)
            arm = SelfPlay(copy.deepcopy(warm), tokenizer, buffers[name], verifier, cfg, use_ppo, cfg.seed + 1)
            arms[name] = arm.run(cfg.arm_seconds, on_metrics, name)
            log(f"arm {name}: {arms[name].iterations} iterations in {arms[name].seconds:.1f}s")
        after = {name: evaluate(arm.model) for name, arm in arms.items()}
        stats = verifier.stats

    shipped = arms["ppo"]
    report = {
        "heldout_tasks": len(heldout),
        "heldout_solve_rate_before": before["overall"]["rate"],
        "heldout_solve_rate_after": after["ppo"]["overall"]["rate"],
        "heldout_before": before,
        "heldout_after_warmup": after_warmup,
        "heldout_after": after["ppo"],
        "per_type": {
            kind: {"before": before[kind]["rate"], "after": after["ppo"][kind]["rate"],
                   "before_ci95": before[kind]["ci95"], "after_ci95": after["ppo"][kind]["ci95"]}
            for kind in cfg.kinds if kind in before
        },
        "ppo_ablation": {
            name: {"heldout_solve_rate": result["overall"]["rate"], "ci95": result["overall"]["ci95"],
                   "per_type": {k: v["rate"] for k, v in result.items() if k != "overall"},
                   "iterations": arms[name].iterations, "seconds": arms[name].seconds}
            for name, result in after.items()
        },
        "warmup": {"steps": warmup["steps"], "seconds": warmup.get("seconds", 0.0), "loss": warmup.get("loss")},
        "proposals": dict(shipped.proposals),
        "valid_proposal_rate": shipped.proposals["valid"] / shipped.proposals["made"] if shipped.proposals["made"] else 0.0,
        "mean_rewards": {key: fmean(values) for key, values in sorted(shipped.rewards.items()) if values},
        "ppo": {key: fmean(values) for key, values in sorted(shipped.ppo.items()) if values},
        "levels": shipped.levels,
        "buffer_sizes": buffers["ppo"].counts(),
        "sandbox_programs_per_s": stats.programs_per_s,
        "sandbox_programs": stats.programs,
        "sandbox_rejections": dict(stats.rejections),
        "model_params": model.num_params(),
        "stage_seconds": time.perf_counter() - started,
    }
    return Outcome(shipped.model.cpu().eval(), buffers["ppo"].records(), [t.to_record() for t in heldout], report)
