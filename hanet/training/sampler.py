"""A resumable distributed sampler.

Each epoch is a permutation fixed by (seed, epoch), split across ranks like
DistributedSampler (padded to a multiple of the world size).  It yields
(epoch, index) pairs so that a sample's augmentation can be seeded by its position
in the run rather than by which worker loads it, and it can start part-way into an
epoch: a resumed run sees exactly the samples the interrupted one would have seen.
"""
from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler):
    def __init__(self, length: int, rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True):
        if length < 1:
            raise ValueError("the training set is empty")
        self.length, self.rank, self.world_size = length, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.per_rank = -(-length // world_size)
        self.epoch = 0
        self.start = 0  # samples of this rank's share to skip (resume within an epoch)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def indices(self, epoch: int) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        total = self.per_rank * self.world_size
        order += order[: total - len(order)]  # pad so every rank gets as many samples
        return order[self.rank:total:self.world_size]

    def __iter__(self):
        for idx in self.indices(self.epoch)[self.start:]:
            yield (self.epoch, idx)

    def __len__(self) -> int:
        return self.per_rank - self.start


class SeededSamples(torch.utils.data.Dataset):
    """Seeds the global RNGs (python, numpy, torch) of the loading process from
    (seed, epoch, index) before producing a sample, so random augmentation is the
    same whichever worker loads it and however the run was interrupted."""

    def __init__(self, base, seed: int):
        self.base, self.seed = base, seed

    def __len__(self):
        return len(self.base)

    def __getitem__(self, key):
        from . import rng

        epoch, index = key
        # Keep the caller's streams (with num_workers=0 this is the training process,
        # whose RNG also drives dropout and position noise).
        saved = rng.capture()
        try:
            rng.seed_all(hash((self.seed, epoch, index)) & 0x7FFFFFFF)
            return self.base[index]
        finally:
            rng.restore(saved)
