"""Distributed data parallel under torchrun: environment detection and small collectives.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them the run is one process and every
helper here degrades to a no-op, so the loop has one code path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """"auto" picks this rank's GPU when CUDA is available, else the CPU."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(preference)


def init_distributed(device: str = "auto") -> DistContext:
    """Read torchrun's environment; join the process group (nccl on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        # Both backends where CUDA is: one process may run a CUDA stage, then a CPU one, over the
        # same group (`torchrun -m kedro run` of every stage); collectives pick by tensor device.
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return DistContext(rank, world_size, local_rank, resolved)


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def available_cpus() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU limit (a
    container's ``limits.cpu``), which ``os.cpu_count()`` does not see on a 64-core node."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            count = min(count, int(quota) // int(period))
    except (OSError, ValueError):
        pass
    return max(1, count)


def cpu_threads_per_rank() -> int:
    """The cores split between the processes of this node (torchrun sets LOCAL_WORLD_SIZE).

    Oversubscribed CPU threads spin against each other: two 2-thread processes on two cores ran
    steps many times slower than two 1-thread processes (docs/references.md §7).
    """
    local_world = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, available_cpus() // local_world)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over ranks (returned; the input is left unchanged)."""
    if not ctx.is_distributed:
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def _reduce_int(value: int, op: dist.ReduceOp.RedOpType, ctx: DistContext) -> int:
    if not ctx.is_distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.long, device=ctx.device)
    dist.all_reduce(tensor, op=op)
    return int(tensor.item())


def all_reduce_min(value: int, ctx: DistContext) -> int:
    return _reduce_int(value, dist.ReduceOp.MIN, ctx)


def barrier(ctx: DistContext) -> None:
    if ctx.is_distributed:
        dist.barrier()


class RankLogger(logging.LoggerAdapter):
    """Prefixes messages with the rank; non-main ranks only pass warnings and errors."""

    def __init__(self, logger: logging.Logger, ctx: DistContext) -> None:
        super().__init__(logger, {})
        self.ctx = ctx

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        prefix = f"[rank {self.ctx.rank}/{self.ctx.world_size}] " if self.ctx.is_distributed else ""
        return f"{prefix}{msg}", kwargs

    def isEnabledFor(self, level: int) -> bool:  # the logging API's name
        if not self.ctx.is_main and level < logging.WARNING:
            return False
        return super().isEnabledFor(level)


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj``, in rank order (e.g. RNG states for a checkpoint)."""
    if not ctx.is_distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def gather_list(items: Sequence[T], ctx: DistContext) -> list[T]:
    """Every rank's ``items`` concatenated in rank order: the same list on every rank."""
    return [item for part in gather_objects(list(items), ctx) for item in part]


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when ``flag`` is true on any: a decision such as "time is up" must be
    the same everywhere, or one rank waits forever in the next collective."""
    return bool(_reduce_int(int(flag), dist.ReduceOp.MAX, ctx))


def map_sharded(fn: Callable[[list[T]], list[R]], items: Sequence[T], ctx: DistContext) -> list[R]:
    """``fn`` over ``items`` with each rank doing a strided share; every rank gets all results
    in the original order (one result per item)."""
    mine = fn(list(items[ctx.rank :: ctx.world_size]))
    if not ctx.is_distributed:
        return mine
    out: list[Any] = [None] * len(items)
    for rank, part in enumerate(gather_objects(mine, ctx)):
        out[rank :: ctx.world_size] = part
    return out


def sum_over_ranks(values: Sequence[float], ctx: DistContext) -> list[float]:
    """Each of ``values`` summed over ranks (counts that make one global figure)."""
    return all_reduce_sum(torch.tensor(list(values), dtype=torch.float64, device=ctx.device), ctx).tolist()


def rank_seed(seed: int, ctx: DistContext) -> int:
    """A seed of this rank's own (rank 0 keeps ``seed``): ranks must draw different rollouts and
    batches, reproducibly."""
    return seed + 1_000_003 * ctx.rank
