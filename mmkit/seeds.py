"""Seeds derived from the run's ``--seed``: every random choice in mmkit is reproducible, the same
with any number of loader workers and after ``--resume``."""

from __future__ import annotations


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle (and of the loader's worker seeds)."""
    return seed * 100_003 + epoch


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one item's augmentation in one epoch (a crop, a caption choice)."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) % 2**31
