"""What changes with the epoch: the seeded, sharded sampling order (:class:`EpochSampler`) and
datasets whose items depend on the epoch (random crops, a random caption per image).

The trainer calls ``set_epoch`` before each epoch. DataLoader workers hold their own copy of the
dataset, and persistent workers (the trainer's default) keep it for the whole run, so a plain
attribute set in the main process would never reach them. :class:`EpochDataset` keeps the epoch
in a one-element tensor in shared memory, which the workers' copies share.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler

from mmkit.seeds import epoch_seed


class EpochDataset(Dataset):
    """Base for datasets that read ``self.epoch``; call ``super().__init__()``."""

    def __init__(self) -> None:
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Items drawn from now on (in this process and in its loader workers) use ``epoch``."""
        self._epoch.fill_(epoch)


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, sharded across DDP ranks, that can start mid-epoch."""

    def __init__(self, n: int, *, seed: int, shuffle: bool, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.shuffle, self.rank, self.world = n, seed, shuffle, rank, world
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        # every rank gets n // world items, so all ranks run the same number of steps
        shard = self._order()[self.rank :: self.world][: self.n // self.world]
        return iter(shard[self.start :])

    def __len__(self) -> int:
        return max(0, self.n // self.world - self.start)
