"""Data-parallel offline training with torch.distributed: `Shard` is what the one training loop
(`trainer.offline.train`) asks of the process group, and `Shard.single()` the same for one process.

Launched the torchrun way (`liverec train --nproc N` re-runs itself under `torch.distributed.run`;
multi-host through MASTER_ADDR/MASTER_PORT), each worker reads RANK/WORLD_SIZE from its environment,
joins a gloo group (CPU) and:
- builds the same epoch's batches as every other worker (same seed, same data), at
  ``batch_size // world`` users each, and trains its share (batch ``rank``, ``rank + world``, ...), so
  one step of the group sees about one single-process batch: the same number of steps per epoch and
  the same learning-rate schedule as one process, with the gradients averaged by DDP;
- lets rank 0 alone evaluate on validation and decide (best epoch, patience, time budget); the
  decision is broadcast, so every worker stops at the same epoch and no collective is left waiting.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


class LossOf(nn.Module):
    """The model's training loss as a module's `forward`: what DDP wraps, so its gradient hooks
    fire on `model.loss` (DDP averages gradients of parameters reached from `forward`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        loss: torch.Tensor = self.model.loss(*args, **kwargs)  # type: ignore[operator]
        return loss


@dataclass(frozen=True)
class Shard:
    """This process's place in the group: ``rank`` of ``world`` (world 1: no group at all)."""

    rank: int = 0
    world: int = 1
    local_world: int = 1  # workers on this host: they share its cores

    @classmethod
    def single(cls) -> Shard:
        return cls()

    @classmethod
    def from_env(cls) -> Shard:
        """Join the group torchrun describes in the environment (gloo); one process without it."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls.single()
        if not dist.is_initialized():
            dist.init_process_group("gloo")
        local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        return cls(dist.get_rank(), dist.get_world_size(), local)

    @property
    def lead(self) -> bool:
        """Rank 0: evaluates, decides, prints and registers."""
        return self.rank == 0

    def batch_size(self, batch_size: int) -> int:
        """Users per worker batch: the group's step stays one single-process batch."""
        return max(1, batch_size // self.world)

    def threads(self, threads: int) -> int:
        """Intra-op threads per worker: this host's cores split among its workers."""
        return max(1, threads // self.local_world)

    def take(self, batches: Sequence[T]) -> list[T]:
        """This worker's batches of an epoch: every world-th, the same count on every worker (a
        worker with one more step would wait forever on the others' gradients)."""
        usable = len(batches) - len(batches) % self.world
        return list(batches[self.rank : usable : self.world])

    def wrap(self, model: nn.Module) -> nn.Module:
        """A module whose `forward(...)` is ``model.loss(...)``, gradient-averaged across the group."""
        loss = LossOf(model)
        if self.world == 1:
            return loss
        return nn.parallel.DistributedDataParallel(loss, find_unused_parameters=True)

    def total(self, *values: float) -> list[float]:
        """The sums of ``values`` over every worker."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def decide(self, *values: float) -> list[float]:
        """Rank 0's ``values`` on every worker (each passes its own; only rank 0's count)."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        dist.broadcast(t, src=0)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
