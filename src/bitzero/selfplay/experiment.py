"""The self-play stage as an experiment: cold start, warm-up, two equal-time arms, held-out rates.

Held-out and validation tasks come from the generator under two more seeds and their keys are
reserved in every buffer, so neither is ever trained on. The arm without PPO (verifier-only
learning, same wall time, same start) is the ablation, reported whichever way it falls. The
stage ships the candidate (warm-up, PPO arm, verifier-only arm) with the best validation solve
rate, so the held-out figures stay an unbiased measure of what is shipped.

Under torchrun (`torchrun --nproc-per-node M -m kedro run --pipelines selfplay`) every rank runs
the whole experiment data-parallel: labelling and evaluation are split between the ranks, the
warm-up and both arms are DDP training (see `loop`), and every rank ends with the same model.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from statistics import fmean
from typing import Any

import torch

from bitzero.model import BitZeroLM
from bitzero.selfplay.agent import agent_for
from bitzero.selfplay.buffer import TaskBuffer
from bitzero.selfplay.config import SelfPlayConfig
from bitzero.selfplay.evaluate import solve_rates
from bitzero.selfplay.generator import LEVELS, generate_tasks
from bitzero.selfplay.learn import proposer_examples, sft_steps, solver_examples
from bitzero.selfplay.loop import ArmResult, MetricsFn, SelfPlay, make_trainer
from bitzero.selfplay.sandbox import Sandbox
from bitzero.selfplay.tasks import Task
from bitzero.selfplay.verify import Verifier
from bitzero.text import Tokenizer
from bitzero.train.ddp import (
    DistContext,
    cpu_threads_per_rank,
    gather_objects,
    init_distributed,
    map_sharded,
    rank_seed,
)


@dataclass
class Outcome:
    model: BitZeroLM
    buffer: list[dict[str, Any]]
    heldout: list[dict[str, Any]]
    report: dict[str, Any]


def label_all(verifier: Verifier, tasks: list[Task], ctx: DistContext = DistContext()) -> list[Task]:
    """The tasks the executor accepts, labelled with their outputs (each rank labels a share)."""
    return [t for t in map_sharded(lambda part: verifier.label(part)[0], tasks, ctx) if t is not None]


def run_experiment(
    model: BitZeroLM, tokenizer: Tokenizer, cfg: SelfPlayConfig, on_metrics: MetricsFn | None = None,
    log: Callable[[str], None] = lambda message: None, reference: tuple[BitZeroLM, Tokenizer] | None = None,
) -> Outcome:
    """Run the whole stage on `model` (left untouched) and return the self-played model and report.
    `reference` (the full-precision teacher and its tokenizer) is only evaluated on the held-out
    set, as the level the student could reach. Under torchrun every rank calls this with the same
    arguments and gets the same outcome."""
    started = time.perf_counter()
    ctx = init_distributed(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    elif ctx.is_distributed and ctx.device.type == "cpu":
        torch.set_num_threads(cpu_threads_per_rank())
    if not ctx.is_main:
        log = lambda message: None  # noqa: E731 - rank 0 speaks for all
    torch.manual_seed(rank_seed(cfg.seed, ctx))
    with Sandbox(timeout_s=cfg.sandbox_timeout_s, memory_mb=cfg.sandbox_memory_mb, workers=cfg.sandbox_workers) as box:
        verifier = Verifier(box, cfg.max_output_chars)
        heldout, validation = (
            label_all(verifier, generate_tasks(per_cell, seed, cfg.kinds, cfg.heldout_levels, induction_pairs=cfg.induction_pairs), ctx)
            for per_cell, seed in ((cfg.heldout_per_cell, cfg.heldout_seed), (cfg.validation_per_cell, cfg.validation_seed))
        )
        reserved = {t.key for t in heldout} | {t.key for t in validation}
        seeds = label_all(verifier, generate_tasks(
            cfg.seed_tasks_per_cell, cfg.seed, cfg.kinds, LEVELS, exclude=reserved, induction_pairs=cfg.induction_pairs), ctx)
        buffer = TaskBuffer(seeds, reserved=reserved)
        log(f"held-out {len(heldout)} tasks, cold-start buffer {len(buffer)} tasks, {ctx.world_size} rank(s) on {ctx.device}")

        warm = copy.deepcopy(model)
        agent = agent_for(warm, tokenizer, cfg)
        trainer = make_trainer(warm, cfg, cfg.sft_lr, ctx)

        def evaluate(m: BitZeroLM, tasks: list[Task] = heldout, tok: Tokenizer = tokenizer) -> dict[str, Any]:
            return solve_rates(agent_for(m, tok, cfg), verifier, tasks, cfg.answer_tokens, ctx)

        before = evaluate(warm)
        log(f"held-out before: {before['overall']['rate']:.3f}")
        teacher = evaluate(reference[0].to(ctx.device), tok=reference[1]) if reference is not None else None
        if teacher is not None:
            log(f"held-out teacher (reference): {teacher['overall']['rate']:.3f}")

        r = Random(rank_seed(cfg.seed, ctx))
        tasks = [t for kind in cfg.kinds for t in buffer.by_kind[kind] if t.difficulty in cfg.warmup_levels]
        examples = solver_examples(agent, tasks, cfg.answer_tokens)
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
            arm = SelfPlay(copy.deepcopy(warm), tokenizer, buffers[name], verifier, cfg, use_ppo, cfg.seed + 1,
                           trainer.optimizer.state_dict(), ctx)
            arms[name] = arm.run(cfg.arm_seconds, on_metrics, name)
            log(f"arm {name}: {arms[name].iterations} iterations in {arms[name].seconds:.1f}s")
        candidates = {"warmup": warm, **{name: arm.model for name, arm in arms.items()}}
        buffers["warmup"] = buffer
        validated = {name: evaluate(m, validation)["overall"]["rate"] for name, m in candidates.items()}
        # Ties go to the most self-played candidate; the held-out set plays no part in the choice.
        chosen = max([n for n in ("ppo", "sft_only", "warmup") if n in candidates], key=validated.__getitem__)
        after = {name: evaluate(m) for name, m in candidates.items() if name != "warmup"}
        after["warmup"] = after_warmup
        log(f"selected {chosen} by validation {validated}; held-out {after[chosen]['overall']['rate']:.3f}")
        sandboxes = gather_objects(verifier.stats, ctx)

    selfplay = arms["ppo"]  # the full loop: its proposals, rewards and PPO statistics
    report = {
        "heldout_tasks": len(heldout),
        "validation_tasks": len(validation),
        "selected_model": chosen,
        "validation_solve_rates": validated,
        "heldout_solve_rate_before": before["overall"]["rate"],
        "heldout_solve_rate_after": after[chosen]["overall"]["rate"],
        "heldout_before": before,
        "heldout_after_warmup": after_warmup,
        "heldout_after": after[chosen],
        "heldout_teacher": teacher,
        "heldout_solve_rate_teacher": teacher["overall"]["rate"] if teacher is not None else None,
        "per_type": compare(before, after[chosen], teacher, [k for k in cfg.kinds if k in before]),
        "per_level": compare(before["overall"]["levels"], after[chosen]["overall"]["levels"],
                             teacher["overall"]["levels"] if teacher is not None else None,
                             list(before["overall"]["levels"])),
        "ppo_ablation": {
            name: {"heldout_solve_rate": after[name]["overall"]["rate"], "ci95": after[name]["overall"]["ci95"],
                   "per_type": {k: v["rate"] for k, v in after[name].items() if k != "overall"},
                   "validation_solve_rate": validated[name],
                   "iterations": arms[name].iterations, "seconds": arms[name].seconds}
            for name in arms
        },
        "warmup": {"steps": warmup["steps"], "seconds": warmup.get("seconds", 0.0), "loss": warmup.get("loss")},
        "proposals": dict(selfplay.proposals),
        "valid_proposal_rate": selfplay.proposals["valid"] / selfplay.proposals["made"] if selfplay.proposals["made"] else 0.0,
        "mean_rewards": {key: fmean(values) for key, values in sorted(selfplay.rewards.items()) if values},
        "ppo": {key: fmean(values) for key, values in sorted(selfplay.ppo.items()) if values},
        "levels": selfplay.levels,
        "buffer_sizes": buffers[chosen].counts(),
        "sandbox_programs_per_s": sum(stats.programs_per_s for stats in sandboxes),  # the ranks run in parallel
        "sandbox_programs": sum(stats.programs for stats in sandboxes),
        "sandbox_rejections": dict(sum((stats.rejections for stats in sandboxes), Counter())),
        "world_size": ctx.world_size,
        "model_params": model.num_params(),
        "stage_seconds": time.perf_counter() - started,
    }
    return Outcome(candidates[chosen].cpu().eval(), buffers[chosen].records(), [t.to_record() for t in heldout], report)


def compare(before: dict, after: dict, teacher: dict | None, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Rates and intervals side by side per key (a kind or a level): before, after, the teacher."""
    rows: dict[str, dict[str, Any]] = {}
    for key in keys:
        rows[key] = {"before": before[key]["rate"], "after": after[key]["rate"],
                     "before_ci95": before[key]["ci95"], "after_ci95": after[key]["ci95"]}
        if teacher is not None:
            rows[key] |= {"teacher": teacher[key]["rate"], "teacher_ci95": teacher[key]["ci95"]}
    return rows
