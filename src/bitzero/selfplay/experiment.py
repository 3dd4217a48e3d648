"""The self-play stage as an experiment: cold start, warm-up, two equal-time arms, held-out rates.

Held-out and validation tasks come from the generator under two more seeds and their keys are
reserved in every buffer, so neither is ever trained on. The arm without PPO (verifier-only
learning, same wall time, same start) is the ablation, reported whichever way it falls. The
stage ships the candidate (warm-up, PPO arm, verifier-only arm) with the best validation solve
rate, so the held-out figures stay an unbiased measure of what is shipped, and only when it beats
the stage's input there: else the input passes through unchanged.

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
from bitzero.selfplay.guard import Guard
from bitzero.selfplay.learn import proposer_examples, sft_steps, solver_examples
from bitzero.selfplay.loop import ArmResult, MetricsFn, SelfPlay, make_trainer
from bitzero.selfplay.sandbox import Sandbox
from bitzero.selfplay.tasks import Task
from bitzero.selfplay.verify import Verifier
from bitzero.text import Tokenizer
from bitzero.train import Trainer
from bitzero.train.batching import Example
from bitzero.train.ddp import (
    DistContext,
    any_rank,
    cpu_threads_per_rank,
    gather_objects,
    init_distributed,
    map_sharded,
    rank_seed,
)

SELF_PLAYED = "self-played"
NOTHING_TO_LEARN = "nothing to learn from: held-out solve rate 0 and no verified targets"
KEPT_INPUT = "kept the input: no candidate beat it on validation"
REFUSED_BY_GUARD = "kept the input: the chosen candidate's conversation NLL worsened by more than the tolerance"


@dataclass
class Outcome:
    model: BitZeroLM
    buffer: list[dict[str, Any]]
    heldout: list[dict[str, Any]]
    report: dict[str, Any]


def label_all(verifier: Verifier, tasks: list[Task], ctx: DistContext = DistContext()) -> list[Task]:
    """The tasks the executor accepts, labelled with their outputs (each rank labels a share)."""
    return [t for t in map_sharded(lambda part: verifier.label(part)[0], tasks, ctx) if t is not None]


@dataclass
class TaskSets:
    heldout: list[Task]  # measured before and after, never trained on nor chosen by
    validation: list[Task]  # chooses the shipped candidate
    buffer: TaskBuffer  # the cold start: generator tasks, both sets' keys reserved


@dataclass
class Bench:
    """What every step shares: the settings, the ranks and the executor."""

    cfg: SelfPlayConfig
    ctx: DistContext
    verifier: Verifier
    tokenizer: Tokenizer
    log: Callable[[str], None]

    def evaluate(self, model: BitZeroLM, tasks: list[Task], tokenizer: Tokenizer | None = None) -> dict[str, Any]:
        return solve_rates(agent_for(model, tokenizer or self.tokenizer, self.cfg), self.verifier, tasks,
                           self.cfg.answer_tokens, self.ctx)


def run_experiment(
    model: BitZeroLM, tokenizer: Tokenizer, cfg: SelfPlayConfig, on_metrics: MetricsFn | None = None,
    log: Callable[[str], None] = lambda message: None, reference: tuple[BitZeroLM, Tokenizer] | None = None,
    guard: Guard | None = None,
) -> Outcome:
    """Run the whole stage on `model` (left untouched) and return the self-played model and report.
    `reference` (the full-precision teacher and its tokenizer) is only evaluated on the held-out
    set, as the level the student could reach. `guard` (bitzero.selfplay.guard) judges the chosen
    candidate once more: the input ships when it does not pass. Under torchrun every rank calls
    this with the same arguments and gets the same outcome."""
    started = time.perf_counter()
    ctx = _start_ranks(cfg)
    with Sandbox(timeout_s=cfg.sandbox_timeout_s, memory_mb=cfg.sandbox_memory_mb, workers=cfg.sandbox_workers) as box:
        bench = Bench(cfg, ctx, Verifier(box, cfg.max_output_chars), tokenizer, log if ctx.is_main else _silent)
        tasks = make_task_sets(bench)
        warm = copy.deepcopy(model).to(ctx.device)  # trained by the warm-up; `model` stays as it was
        r = Random(rank_seed(cfg.seed, ctx))
        targets = verified_targets(bench, warm, tasks.buffer, r)
        before = bench.evaluate(warm, tasks.heldout)
        bench.log(f"held-out before: {before['overall']['rate']:.3f}; {len(targets)} verified targets")
        if before["overall"]["solved"] == 0 and not any_rank(bool(targets), ctx):
            bench.log(f"{NOTHING_TO_LEARN}: the input passes through")
            return Outcome(copy.deepcopy(model).cpu().eval(), tasks.buffer.records(),
                           [t.to_record() for t in tasks.heldout],
                           nothing_to_learn_report(tasks, before, ctx, model, started))
        input_rate = bench.evaluate(warm, tasks.validation)["overall"]["rate"]
        teacher = bench.evaluate(reference[0].to(ctx.device), tasks.heldout, reference[1]) if reference else None
        if teacher is not None:
            bench.log(f"held-out teacher (reference): {teacher['overall']['rate']:.3f}")
        trainer, warmup = warm_up(bench, warm, targets, r)
        after_warmup = bench.evaluate(warm, tasks.heldout)
        bench.log(f"warm-up: {warmup['steps']:.0f} steps, held-out {after_warmup['overall']['rate']:.3f}")
        arms, buffers = run_arms(bench, warm, trainer, tasks.buffer, on_metrics)
        candidates = {"warmup": warm, **{name: arm.model for name, arm in arms.items()}}
        buffers["warmup"] = buffers["input"] = tasks.buffer
        chosen, validated = choose(bench, candidates, tasks.validation, input_rate)
        guarded = guard(candidates[chosen]) if guard is not None and chosen != "input" else None
        if guarded is not None and not guarded["passed"]:
            bench.log(f"{chosen} refused by the chat guard: {guarded}")
            chosen = "input"
        after = {name: bench.evaluate(m, tasks.heldout) for name, m in candidates.items() if name != "warmup"}
        after["warmup"], after["input"] = after_warmup, before
        bench.log(f"selected {chosen} by validation {validated}; held-out {after[chosen]['overall']['rate']:.3f}")
        sandboxes = gather_objects(bench.verifier.stats, ctx)

    report = {
        "status": SELF_PLAYED if chosen != "input" else KEPT_INPUT if guarded is None else REFUSED_BY_GUARD,
        "chat_guard": guarded,
        "heldout_tasks": len(tasks.heldout),
        "validation_tasks": len(tasks.validation),
        "verified_targets": len(targets),
        **solve_rate_report(chosen, validated, before, after, teacher, arms, cfg.kinds),
        "warmup": {"steps": warmup["steps"], "seconds": warmup.get("seconds", 0.0), "loss": warmup.get("loss")},
        **selfplay_report(arms["ppo"]),  # the full loop: its proposals, rewards and PPO statistics
        "buffer_sizes": buffers[chosen].counts(),
        "sandbox_programs_per_s": sum(stats.programs_per_s for stats in sandboxes),  # the ranks run in parallel
        "sandbox_programs": sum(stats.programs for stats in sandboxes),
        "sandbox_rejections": dict(sum((stats.rejections for stats in sandboxes), Counter())),
        "world_size": ctx.world_size,
        "model_params": model.num_params(),
        "stage_seconds": time.perf_counter() - started,
    }
    shipped = copy.deepcopy(model) if chosen == "input" else candidates[chosen]
    return Outcome(shipped.cpu().eval(), buffers[chosen].records(), [t.to_record() for t in tasks.heldout], report)


def nothing_to_learn_report(tasks: TaskSets, before: dict[str, Any], ctx: DistContext, model: BitZeroLM,
                            started: float) -> dict[str, Any]:
    """The report of a stage that had nothing to learn from: the held-out rate it measured, and why."""
    return {
        "status": NOTHING_TO_LEARN,
        "heldout_tasks": len(tasks.heldout),
        "validation_tasks": len(tasks.validation),
        "verified_targets": 0,
        "selected_model": "input",
        "heldout_solve_rate_before": before["overall"]["rate"],
        "heldout_solve_rate_after": before["overall"]["rate"],
        "heldout_before": before,
        "heldout_after": before,
        "buffer_sizes": tasks.buffer.counts(),
        "world_size": ctx.world_size,
        "model_params": model.num_params(),
        "stage_seconds": time.perf_counter() - started,
    }


def _silent(message: str) -> None:
    """The log of ranks other than 0: rank 0 speaks for all."""


def _start_ranks(cfg: SelfPlayConfig) -> DistContext:
    """Join torchrun's process group when there is one; threads and seeds per rank."""
    ctx = init_distributed(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    elif ctx.is_distributed and ctx.device.type == "cpu":
        torch.set_num_threads(cpu_threads_per_rank())
    torch.manual_seed(rank_seed(cfg.seed, ctx))
    return ctx


def make_task_sets(bench: Bench) -> TaskSets:
    """Held-out and validation sets under their own seeds, then the cold-start buffer without them."""
    cfg = bench.cfg
    heldout, validation = (
        label_all(bench.verifier, generate_tasks(per_cell, seed, cfg.kinds, cfg.heldout_levels,
                                                 induction_pairs=cfg.induction_pairs), bench.ctx)
        for per_cell, seed in ((cfg.heldout_per_cell, cfg.heldout_seed), (cfg.validation_per_cell, cfg.validation_seed))
    )
    reserved = {t.key for t in heldout} | {t.key for t in validation}
    seeds = label_all(bench.verifier, generate_tasks(
        cfg.seed_tasks_per_cell, cfg.seed, cfg.kinds, LEVELS, exclude=reserved, induction_pairs=cfg.induction_pairs),
        bench.ctx)
    buffer = TaskBuffer(seeds, reserved=reserved)
    bench.log(f"held-out {len(heldout)} tasks, cold-start buffer {len(buffer)} tasks, "
              f"{bench.ctx.world_size} rank(s) on {bench.ctx.device}")
    return TaskSets(heldout, validation, buffer)


def verified_targets(bench: Bench, model: BitZeroLM, buffer: TaskBuffer, r: Random) -> list[Example]:
    """The warm-up's supervised examples: executor-verified answers to the buffer's tasks at the
    warm-up levels and buffer tasks as proposals, those that fit the token budgets. None (and a
    held-out rate of 0) means self-play has nothing to learn from."""
    cfg = bench.cfg
    agent = agent_for(model, bench.tokenizer, cfg)
    tasks = [t for kind in cfg.kinds for t in buffer.by_kind[kind] if t.difficulty in cfg.warmup_levels]
    examples = solver_examples(agent, tasks, cfg.answer_tokens)
    per_kind = round(cfg.proposer_sft_fraction * len(examples) / len(cfg.kinds))
    for kind in cfg.kinds:
        examples += proposer_examples(agent, buffer, kind, per_kind, cfg.references, r, cfg.proposal_tokens)
    return examples


def warm_up(bench: Bench, warm: BitZeroLM, examples: list[Example], r: Random) -> tuple[Trainer, dict[str, float]]:
    """Supervised steps on `warm` with the verified targets: what gets a near-zero model going
    before self-play can reward anything."""
    cfg = bench.cfg
    trainer = make_trainer(warm, cfg, cfg.sft_lr, bench.ctx)
    warmup = sft_steps(trainer, examples, cfg.warmup_max_steps, cfg.sft_batch_size, r, cfg.warmup_seconds,
                       bench.tokenizer.pad_id)
    return trainer, warmup


def run_arms(bench: Bench, warm: BitZeroLM, trainer: Trainer, buffer: TaskBuffer,
             on_metrics: MetricsFn | None) -> tuple[dict[str, ArmResult], dict[str, TaskBuffer]]:
    """Self-play from the warm-up with PPO, and (the ablation) without, for the same wall time."""
    cfg = bench.cfg
    arms: dict[str, ArmResult] = {}
    buffers: dict[str, TaskBuffer] = {}
    for name, use_ppo in (("ppo", True), ("sft_only", False)) if cfg.ablation else (("ppo", True),):
        buffers[name] = copy.deepcopy(buffer)
        arm = SelfPlay(copy.deepcopy(warm), bench.tokenizer, buffers[name], bench.verifier, cfg, use_ppo, cfg.seed + 1,
                       trainer.optimizer.state_dict(), bench.ctx)
        arms[name] = arm.run(cfg.arm_seconds, on_metrics, name)
        bench.log(f"arm {name}: {arms[name].iterations} iterations in {arms[name].seconds:.1f}s")
    return arms, buffers


def choose(bench: Bench, candidates: dict[str, BitZeroLM], validation: list[Task],
           input_rate: float) -> tuple[str, dict[str, float]]:
    """The self-played candidate with the best validation solve rate (ties go to the most self-played
    one) if it beats the stage's input there, else "input". Self-play that measurably learned
    nothing must not ship its side effects: in the demo profile, with every rate at 0, it took the
    student's held-out chat NLL from 7.9 to 12.7. The held-out set plays no part in the choice."""
    validated = {"input": input_rate, **{name: bench.evaluate(m, validation)["overall"]["rate"]
                                         for name, m in candidates.items()}}
    best = max([n for n in ("ppo", "sft_only", "warmup") if n in candidates], key=validated.__getitem__)
    return (best if validated[best] > input_rate else "input"), validated


def solve_rate_report(
    chosen: str, validated: dict[str, float], before: dict[str, Any], after: dict[str, dict[str, Any]],
    teacher: dict[str, Any] | None, arms: dict[str, ArmResult], kinds: tuple[str, ...],
) -> dict[str, Any]:
    """Held-out rates before, after (the shipped candidate, each arm) and of the teacher, with intervals."""
    return {
        "selected_model": chosen,
        "validation_solve_rates": validated,
        "heldout_solve_rate_before": before["overall"]["rate"],
        "heldout_solve_rate_after": after[chosen]["overall"]["rate"],
        "heldout_before": before,
        "heldout_after_warmup": after["warmup"],
        "heldout_after": after[chosen],
        "heldout_teacher": teacher,
        "heldout_solve_rate_teacher": teacher["overall"]["rate"] if teacher is not None else None,
        "per_type": compare(before, after[chosen], teacher, [k for k in kinds if k in before]),
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
    }


def selfplay_report(selfplay: ArmResult) -> dict[str, Any]:
    """The self-play loop's own figures: proposals, rewards, PPO statistics, difficulty levels."""
    return {
        "proposals": dict(selfplay.proposals),
        "valid_proposal_rate": selfplay.proposals["valid"] / selfplay.proposals["made"] if selfplay.proposals["made"] else 0.0,
        "mean_rewards": {key: fmean(values) for key, values in sorted(selfplay.rewards.items()) if values},
        "ppo": {key: fmean(values) for key, values in sorted(selfplay.ppo.items()) if values},
        "levels": selfplay.levels,
    }


def compare(before: dict, after: dict, teacher: dict | None, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Rates and intervals side by side per key (a kind or a level): before, after, the teacher."""
    rows: dict[str, dict[str, Any]] = {}
    for key in keys:
        rows[key] = {"before": before[key]["rate"], "after": after[key]["rate"],
                     "before_ci95": before[key]["ci95"], "after_ci95": after[key]["ci95"]}
        if teacher is not None:
            rows[key] |= {"teacher": teacher[key]["rate"], "teacher_ci95": teacher[key]["ci95"]}
    return rows
