"""The self-play loop: propose -> verify -> solve -> reward -> learn, and the stage's experiment.

One iteration (Absolute Zero, docs/references.md §3, adapted to a tiny model per §7):
1. the curriculum picks kinds (math-heavy early, code-heavy late) and each kind's level follows
   its solve rate;
2. the proposer writes new tasks from K buffer references; the executor labels them, and every
   valid one joins the buffer;
3. the solver samples n answers per task (the new proposals and buffer tasks), KV-cached; the
   verifier rewards them; a proposal's reward is its learnability;
4. PPO (on-policy, so first) on solver samples of tasks whose solve rate is in the learnable band
   and on all proposals, advantages normalised per (kind, role); then supervised steps on
   verified targets, the solver's own correct samples and proposer examples.

`run_experiment` measures held-out solve rates before, after the supervised warm-up, and after two
arms of equal wall time: self-play with PPO (the stage's model) and without (the ablation).

Under torchrun the loop is data-parallel: each rank proposes, solves and verifies its own
rollouts (its own seed, its own sandbox); the valid proposals of all ranks join every rank's
buffer in rank order, solve rates and rewards are pooled before they move the difficulty levels
and the PPO advantages, and every update is a DDP step. Buffers, levels and weights therefore
stay identical on every rank, and N ranks make N times the rollouts per iteration.
"""

from __future__ import annotations

import copy
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from random import Random
from typing import cast

import torch
from tqdm.auto import tqdm

from bitzero.model import BitZeroLM
from bitzero.selfplay.agent import Completion, agent_for
from bitzero.selfplay.buffer import TaskBuffer
from bitzero.selfplay.config import SelfPlayConfig
from bitzero.selfplay.generator import DifficultyController, curriculum_weights
from bitzero.selfplay.learn import (
    fitting_proposer_prompt,
    proposer_examples,
    sample_mixture,
    sft_steps,
    solver_examples,
)
from bitzero.selfplay.ppo import PPOLoss, Sample, ppo_update
from bitzero.selfplay.prompts import solver_prompt
from bitzero.selfplay.rewards import proposer_reward, solve_rate, task_relative_advantages
from bitzero.selfplay.tasks import FormatError, Task, parse_proposal
from bitzero.selfplay.verify import Verifier
from bitzero.text import Tokenizer
from bitzero.train import TrainConfig, Trainer
from bitzero.train.ddp import (
    DistContext,
    any_rank,
    gather_list,
    gather_objects,
    rank_seed,
    resolve_device,
    sum_over_ranks,
)

MetricsFn = Callable[[str, int, dict[str, float]], None]  # (arm, step, metrics)
SolverSample = tuple[Task, Completion, float]  # task, sampled answer, reward


class Refusal(StrEnum):
    """Why a proposal never reached the executor (counted beside the sandbox's failures)."""

    FORMAT = "format"  # unfinished, or not a program with calls of the asked shape
    DUPLICATE = "duplicate"  # a task the buffer already holds
    TOO_LONG = "too long"  # no room left in the context for the solver to answer


@dataclass
class ArmResult:
    model: BitZeroLM
    iterations: int = 0
    seconds: float = 0.0
    proposals: Counter = field(default_factory=Counter)  # made / valid / added, per kind too
    rewards: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    ppo: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    levels: dict[str, int] = field(default_factory=dict)


def make_trainer(model: BitZeroLM, cfg: SelfPlayConfig, lr: float, ctx: DistContext | None = None) -> Trainer:
    """The shared training step (clipping, precision, device, DDP under torchrun) at a constant
    rate: self-play has no fixed step count for a schedule to span."""
    train_cfg = TrainConfig(
        max_steps=1, lr=lr, schedule="constant", grad_clip=cfg.grad_clip, device=cfg.device,
        precision="fp32", progress=False, auto_batch=False, weight_decay=0.0,
    )
    return Trainer(model, train_cfg, ctx or DistContext(device=resolve_device(cfg.device)))


class SelfPlay:
    """One arm of self-play on its own copy of the model; the buffer grows as it goes."""

    def __init__(self, model: BitZeroLM, tokenizer: Tokenizer, buffer: TaskBuffer, verifier: Verifier,
                 cfg: SelfPlayConfig, use_ppo: bool, seed: int, sft_optimizer_state: dict | None = None,
                 ctx: DistContext | None = None) -> None:
        """`sft_optimizer_state` continues the warm-up's AdamW moments: a fresh AdamW at the
        supervised rate takes full-size steps on its first updates and undoes part of the warm-up."""
        self.cfg, self.use_ppo, self.buffer, self.verifier = cfg, use_ppo, buffer, verifier
        self.agent = agent_for(model, tokenizer, cfg)
        self.sft = make_trainer(model, cfg, cfg.sft_lr, ctx)
        self.ctx = self.sft.ctx
        if sft_optimizer_state is not None:
            self.sft.optimizer.load_state_dict(copy.deepcopy(sft_optimizer_state))
        reference = copy.deepcopy(model).eval() if use_ppo and cfg.kl_coef > 0 else None
        self.ppo = make_trainer(model, cfg, cfg.ppo_lr, self.ctx) if use_ppo else None
        if self.ppo is not None:
            self.ppo.loss_fn = PPOLoss(cfg.clip_low, cfg.clip_high, cfg.kl_coef, cfg.entropy_coef, reference, cfg.temperature)
        self.levels = DifficultyController(cfg.kinds)
        self.r = Random(rank_seed(seed, self.ctx))  # this rank's draws
        self.shared = Random(seed)  # draws every rank must agree on
        self.generator = torch.Generator(device=self.ctx.device).manual_seed(rank_seed(seed, self.ctx))
        self.result = ArmResult(model)

    def run(self, seconds: float, on_metrics: MetricsFn | None = None, arm: str = "") -> ArmResult:
        start = time.perf_counter()
        # The arm runs for a wall time: the bar counts its seconds, the postfix the iterations done.
        with tqdm(total=round(seconds), desc=f"self-play {arm}".strip(), unit="s", disable=not self.ctx.is_main,
                  dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]",
                  ) as bar:
            while self.result.iterations < self.cfg.max_iterations:
                elapsed = time.perf_counter() - start
                if any_rank(elapsed >= seconds, self.ctx):
                    break
                metrics = self.iteration(min(1.0, elapsed / seconds))
                self.result.iterations += 1
                if on_metrics is not None:
                    on_metrics(arm, self.result.iterations, metrics)
                bar.update(min(seconds, time.perf_counter() - start) - bar.n)
                bar.set_postfix(iterations=self.result.iterations, refresh=False)
        self.result.seconds = time.perf_counter() - start
        self.result.levels = dict(self.levels.levels)
        return self.result

    def iteration(self, progress: float) -> dict[str, float]:
        cfg, r = self.cfg, self.r
        weights = curriculum_weights(progress, cfg.kinds)
        proposals, proposal_completions, metrics = self._propose(weights)
        tasks = [t for t in proposals if t is not None]
        tasks += sample_mixture(self.buffer, weights, max(0, cfg.tasks_per_iteration - len(tasks)), r, self.levels.levels)
        samples, rates, solver_metrics = self._solve(tasks)
        metrics.update(solver_metrics)
        # Proposer rewards: -1 invalid, learnability of the new task otherwise.
        rate_of = dict(zip((t.key for t in tasks), rates, strict=True))
        proposer_rewards = [
            proposer_reward(task is not None, rate_of.get(task.key) if task is not None else None)
            for task in proposals
        ]
        for task in gather_list([t for t in proposals if t is not None], self.ctx):
            if self.buffer.add(task):
                self.result.proposals["added"] += 1
        by_kind: dict[str, list[float]] = defaultdict(list)
        local = [(kind, reward) for (kind, _), reward in zip(proposal_completions, proposer_rewards, strict=True)]
        for kind, reward in gather_list(local, self.ctx):
            self.result.rewards[f"propose/{kind}"].append(reward)
            by_kind[kind].append(reward)
        metrics.update({f"reward/propose/{kind}": sum(v) / len(v) for kind, v in by_kind.items()})
        if self.use_ppo:
            metrics.update(self._ppo(samples, proposal_completions, proposer_rewards, tasks, rates))
        metrics.update(self._supervised(tasks, samples, weights))
        metrics["buffer/size"] = float(len(self.buffer))
        for kind, level in self.levels.levels.items():
            metrics[f"level/{kind}"] = float(level)
        rejections: Counter = Counter()
        for part in gather_objects(dict(self.verifier.stats.rejections), self.ctx):
            rejections.update(part)
        for reason, count in rejections.items():
            metrics[f"sandbox/rejected/{reason}"] = float(count)
        return metrics

    def _propose(self, weights: dict[str, float]) -> tuple[list[Task | None], list[tuple[str, Completion]], dict[str, float]]:
        cfg = self.cfg
        kinds = self.r.choices(list(weights), list(weights.values()), k=cfg.proposals_per_iteration)
        prompts = [
            fitting_proposer_prompt(self.agent, k, self.buffer.sample(k, cfg.references, self.r, self.levels.levels[k]))
            for k in kinds
        ]
        completions = self.agent.sample(prompts, cfg.proposal_tokens, cfg.temperature, self.generator)
        parsed: list[Task | None] = []
        for kind, completion in zip(kinds, completions, strict=True):
            parse = self._parse(kind, completion)
            if isinstance(parse, Refusal):
                self.verifier.stats.rejections[parse] += 1
            parsed.append(parse if isinstance(parse, Task) else None)
        labelled = iter(self.verifier.label([t for t in parsed if t is not None])[0])
        proposals = [next(labelled) if t is not None else None for t in parsed]
        for i, proposal in enumerate(proposals):  # the solver must have room to answer
            if proposal is not None and not self.agent.fits(solver_prompt(proposal)):
                self.verifier.stats.rejections[Refusal.TOO_LONG] += 1
                proposals[i] = None
        made, ok = (int(n) for n in sum_over_ranks([len(proposals), sum(t is not None for t in proposals)], self.ctx))
        self.result.proposals["made"] += made
        self.result.proposals["valid"] += ok
        return proposals, list(zip(kinds, completions, strict=True)), {"proposals/valid_rate": ok / made if made else 0.0}

    def _parse(self, kind: str, completion: Completion) -> Task | Refusal:
        """The proposed task at the kind's current level, or why the proposal counts for nothing."""
        if not completion.finished:
            return Refusal.FORMAT
        try:
            task = parse_proposal(kind, completion.text)
        except FormatError:
            return Refusal.FORMAT
        if task in self.buffer:
            return Refusal.DUPLICATE
        return Task(kind, task.program, task.inputs, difficulty=self.levels.levels[kind], origin="proposer")

    def _solve(self, tasks: list[Task]) -> tuple[list[SolverSample], list[float], dict[str, float]]:
        n = self.cfg.samples_per_task
        repeated = [t for t in tasks for _ in range(n)]
        by_kind: dict[str, list[int]] = defaultdict(list)
        for i, task in enumerate(repeated):
            by_kind[task.kind].append(i)
        completions: list[Completion | None] = [None] * len(repeated)
        for kind, indices in by_kind.items():  # one token budget per kind
            got = self.agent.sample([solver_prompt(repeated[i]) for i in indices], self.cfg.answer_tokens[kind],
                                    self.cfg.temperature, self.generator)
            for i, completion in zip(indices, got, strict=True):
                completions[i] = completion
        solved = cast(list[Completion], completions)  # every index belongs to one kind: all filled above
        answers = [c.text if c.finished else "" for c in solved]
        rewards = self.verifier.score(repeated, answers)
        rates = [solve_rate(rewards[i * n : (i + 1) * n]) for i in range(len(tasks))]
        # Levels and metrics follow the rates and rewards of all ranks.
        local = [(t.kind, rate, rewards[i * n : (i + 1) * n]) for i, (t, rate) in enumerate(zip(tasks, rates, strict=True))]
        kind_rates: dict[str, list[float]] = defaultdict(list)
        kind_rewards: dict[str, list[float]] = defaultdict(list)
        for kind, rate, task_rewards in gather_list(local, self.ctx):
            kind_rates[kind].append(rate)
            kind_rewards[kind].extend(task_rewards)
        all_rates = [rate for values in kind_rates.values() for rate in values]
        metrics: dict[str, float] = {"solve_rate": sum(all_rates) / len(all_rates)} if all_rates else {}
        for kind, values in kind_rates.items():
            metrics[f"solve_rate/{kind}"] = sum(values) / len(values)
            metrics[f"reward/solve/{kind}"] = sum(kind_rewards[kind]) / len(kind_rewards[kind])
            self.result.rewards[f"solve/{kind}"].extend(kind_rewards[kind])
        self.levels.update({k: metrics[f"solve_rate/{k}"] for k in kind_rates})
        return list(zip(repeated, solved, rewards, strict=True)), rates, metrics

    def _ppo(self, samples: list[SolverSample], proposal_completions: list[tuple[str, Completion]],
             proposer_rewards: list[float], tasks: list[Task], rates: list[float]) -> dict[str, float]:
        cfg = self.cfg
        if self.ppo is None:
            raise RuntimeError("PPO updates need a loop built with use_ppo")
        rate_of = {t.key: rate for t, rate in zip(tasks, rates, strict=True)}
        rows: list[tuple[tuple[str, str], Completion, float]] = []
        for task, completion, reward in samples:
            if cfg.band_low <= rate_of[task.key] <= cfg.band_high and completion.tokens:
                rows.append(((task.kind, "solve"), completion, reward))
        for (kind, completion), reward in zip(proposal_completions, proposer_rewards, strict=True):
            if completion.tokens:
                rows.append(((kind, "propose"), completion, reward))
        rows = gather_list(rows, self.ctx)  # advantages are normalised over every rank's rollouts
        advantages = task_relative_advantages([r for _, _, r in rows], [g for g, _, _ in rows])
        batch = [Sample(c.prompt, c.tokens, c.logprobs, a) for (_, c, _), a in zip(rows, advantages, strict=True) if a != 0.0]
        in_band = sum(1 for g, _, _ in rows if g[1] == "solve")
        stats = ppo_update(self.ppo, batch, cfg.ppo_epochs, cfg.ppo_minibatch, self.shared.randrange(1 << 30), self.agent.tokenizer.pad_id)
        for key, value in stats.items():
            self.result.ppo[key].append(value)
        self.result.ppo["samples"].append(float(len(batch)))
        self.result.ppo["solver_samples_in_band"].append(float(in_band))
        return {f"ppo/{k}": v for k, v in stats.items()} | {"ppo/samples": float(len(batch)), "ppo/in_band": float(in_band)}

    def _supervised(self, tasks: list[Task], samples: list[SolverSample], weights: dict[str, float]) -> dict[str, float]:
        cfg, r = self.cfg, self.r
        count = cfg.sft_steps_per_iteration * cfg.sft_batch_size
        # Replay verified targets up to the frontier (never below the warm-up's levels): rollouts aim
        # at the practice level, but supervised steps on it alone would forget the levels above.
        frontier = {k: max(level, *self.cfg.warmup_levels) for k, level in self.levels.levels.items()}
        replay = sample_mixture(self.buffer, weights, count, r, frontier, up_to=True)
        examples = solver_examples(self.agent, replay + tasks, cfg.answer_tokens)
        correct = list(dict.fromkeys((task.key, c.text) for task, c, reward in samples if reward == 1.0))
        by_key = {t.key: t for t in tasks}
        examples += [ex for key, text in correct
                     if (ex := self.agent.example(solver_prompt(by_key[key]), text, cfg.answer_tokens[by_key[key].kind]))]
        for kind in cfg.kinds:
            n = round(cfg.proposer_sft_fraction * count * weights[kind])
            examples += proposer_examples(self.agent, self.buffer, kind, n, cfg.references, r, cfg.proposal_tokens)
        stats = sft_steps(self.sft, examples, cfg.sft_steps_per_iteration, cfg.sft_batch_size, r, pad_id=self.agent.tokenizer.pad_id)
        (rft,) = sum_over_ranks([len(correct)], self.ctx)
        return {"sft/loss": stats.get("loss", float("nan")), "sft/rft_examples": rft}
