"""The order of training samples: which sample keys make the batch of each step.

The batch of step k is a pure function of (seed, k), so a resumed run, a run with DataLoader
workers and a distributed run all see the same data as one uninterrupted process.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from engine.errors import ConfigError


class StepBatchSampler(Sampler[list[int]]):
    """Batches of sample keys for steps start..stop-1; the batch of a step depends only on it.

    The global sample stream is a fresh permutation of the dataset per epoch (seeded by
    (seed, epoch)); global step k takes positions [k*B*W, (k+1)*B*W) of it and rank r the r-th
    slice of B. A key is `epoch * n + index`, so a sample's random draws differ between epochs.
    This replaces DistributedSampler: it shards the same way but also resumes mid-epoch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if n < 1:
            raise ConfigError("StepBatchSampler: the dataset is empty")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.stop, self.rank, self.world_size = start, stop, rank, world_size
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            self._perms[epoch] = np.random.default_rng([self.seed, 5, epoch]).permutation(self.n)
        return self._perms[epoch]

    def keys(self, step: int) -> list[int]:
        first = (step * self.world_size + self.rank) * self.batch_size
        out = []
        for pos in range(first, first + self.batch_size):
            epoch, i = divmod(pos, self.n)
            out.append(epoch * self.n + int(self._perm(epoch)[i]))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield self.keys(step)


def make_loader(dataset: Dataset, sampler: StepBatchSampler, num_workers: int,
                device: torch.device) -> DataLoader:
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      pin_memory=device.type == "cuda")
