"""Data-parallel training under ``torchrun``: the same ``dnn train`` command, N processes.

``torchrun --nproc_per_node=N -m dnn.cli train RECIPE ...`` sets WORLD_SIZE / RANK; then every process builds the
same model from the same seed, wraps it in DistributedDataParallel (gloo on CPU, NCCL on GPU), takes every N-th
batch of the epoch (the same number on every rank, so no rank waits forever), and only rank 0 writes files, with
barriers around every save so that no rank runs ahead of a checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["Distributed", "setup"]


class _DDP(DistributedDataParallel):
    """DDP whose other attributes (``loss``, ``encode``, ``decode_step``...) reach the wrapped model."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def wrap(self, model: nn.Module) -> nn.Module:
        if not self.enabled:
            return model
        device = next(model.parameters()).device
        return _DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    @property
    def local_rank(self) -> int:
        """This process's GPU on its machine (torchrun's LOCAL_RANK)."""
        return int(os.environ.get("LOCAL_RANK", self.rank))

    def shard(self, batches: Callable[[int], Iterable[Any]], per_epoch: int) -> Callable[[int], Iterable[Any]]:
        """Every rank takes every ``world``-th batch; the tail that would leave ranks uneven is dropped."""
        if not self.enabled:
            return batches
        usable = per_epoch // self.world * self.world

        def sharded(epoch: int):
            for index, batch in enumerate(batches(epoch)):
                if index >= usable:
                    break
                if index % self.world == self.rank:
                    yield batch

        return sharded

    def steps_per_epoch(self, per_epoch: int) -> int:
        return per_epoch // self.world if self.enabled else per_epoch

    def weights_identical(self, model: nn.Module) -> bool:
        """Whether every rank holds bit-identical parameters (compares a checksum of the raw bytes)."""
        if not self.enabled:
            return True
        flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
        local = torch.stack([flat.sum(), (flat * torch.arange(1, flat.numel() + 1, dtype=torch.float64)).sum()])
        gathered = [torch.zeros_like(local) for _ in range(self.world)]
        dist.all_gather(gathered, local)
        return all(torch.equal(g, gathered[0]) for g in gathered)

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def setup() -> Distributed:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())
