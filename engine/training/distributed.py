"""The distributed environment of a training process: rank, world size and device under torchrun.

A single process is the world of one, so the training loop calls the same methods either way.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

from engine.device import pick_device


@dataclass
class DistEnv:
    """Where this process runs: its rank among WORLD_SIZE processes (torchrun's env) and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device: str = "auto") -> DistEnv:
        """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK; join the process group (nccl on GPU)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
        dev = pick_device(device, local)
        owns = False
        if world > 1 and not dist.is_initialized():
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
            owns = True
        return cls(rank, world, local, dev, owns)

    def all_mean(self, values: Tensor) -> Tensor:
        if self.world_size > 1:
            dist.all_reduce(values)
            values = values / self.world_size
        return values

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (so all ranks stop at the same step)."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def close(self) -> None:
        """Leave the process group in step: every rank passes a barrier (no collective of a
        peer is still in flight) before any rank destroys its end of the connections."""
        if self.owns_group and dist.is_initialized():
            try:
                dist.barrier()
            finally:
                dist.destroy_process_group()
