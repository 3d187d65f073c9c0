"""What changes with the epoch: the seeded, sharded sampling order (:class:`EpochSampler`),
datasets whose items depend on the epoch (random crops, a random caption per image) and
:func:`distinct_batches`, an epoch order in which no key occurs twice in a batch.

The trainer calls ``set_epoch`` before each epoch. DataLoader workers hold their own copy of the
dataset, and persistent workers (the trainer's default) keep it for the whole run, so a plain
attribute set in the main process would never reach them. :class:`EpochDataset` keeps the epoch
in a one-element tensor in shared memory, which the workers' copies share.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mmkit.seeds import epoch_seed


class EpochDataset(Dataset):
    """Base for datasets that read ``self.epoch``; call ``super().__init__()``.

    ``ordered`` (a class attribute) is True for a dataset that orders each epoch itself, seeded
    by the epoch (:func:`distinct_batches`): the trainer's sampler then reads its positions in
    sequence instead of shuffling them."""

    ordered = False

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


def distinct_batches(
    options: Sequence[Sequence[int]], keys: Sequence[int], batch_size: int, *, seed: int
) -> list[int]:
    """One epoch's order: every item once, shuffled, each as one of its ``options`` (an image
    as one of its captions), so that no two picks with the same ``keys[option]`` (the same
    caption text) fall in one block of ``batch_size`` consecutive positions, a batch.

    Greedy and seeded: a block first takes the items left waiting, then the next ones of the
    shuffled order, each with a random one of its options whose key the block does not hold
    yet; an item with none waits for the next block. Only when the items left cannot fill a
    block without a repeat (at the end of an epoch whose keys are too few) are they placed as
    they come, so a repeat can only fall in the last blocks. Returns the picked options."""
    if batch_size < 1:
        raise ValueError(f"batch_size ({batch_size}) must be >= 1")
    if any(len(o) == 0 for o in options):
        raise ValueError("every item needs at least one option")
    rng = np.random.default_rng(seed)
    fresh = iter(rng.permutation(len(options)).tolist())
    draw = rng.random(len(options))  # which free option an item takes
    picks: list[int] = []
    waiting: deque[int] = deque()

    def pick(item: int, taken: set[int]) -> int | None:
        free = [o for o in options[item] if keys[o] not in taken]
        return free[int(draw[item] * len(free))] if free else None

    while True:
        taken: set[int] = set()
        block: list[int] = []
        for _ in range(len(waiting)):  # the waiting items first, in their order
            item = waiting.popleft()
            option = pick(item, taken) if len(block) < batch_size else None
            if option is None:
                waiting.append(item)
            else:
                block.append(option)
                taken.add(keys[option])
        for item in fresh if len(block) < batch_size else ():
            option = pick(item, taken)
            if option is None:
                waiting.append(item)
                continue
            block.append(option)
            taken.add(keys[option])
            if len(block) == batch_size:
                break
        picks.extend(block)
        if len(block) < batch_size:  # the order is used up: the rest as it comes
            picks.extend(pick(item, set()) for item in waiting)  # type: ignore[misc]
            return picks
