"""Datasets whose items depend on the epoch (random crops, a random caption per image).

The trainer calls ``set_epoch`` before each epoch. DataLoader workers hold their own copy of the
dataset, and persistent workers (the trainer's default) keep it for the whole run, so a plain
attribute set in the main process would never reach them. :class:`EpochDataset` keeps the epoch
in a one-element tensor in shared memory, which the workers' copies share.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


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
