"""Batches in which no two images share a caption text: the ``--batches groups`` arm of the
image-text factor screen (``benchmarks/image_text_factors.py``, issue 18). Measured, not
adopted: no clear gain over mmkit's ``distinct_batches`` (``results/mm/issue18/p0groups.json``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def groups_of(options: Sequence[Sequence[int]], keys: Sequence[int]) -> list[int]:
    """The group of each item: items are in one group when they share a key (an image and
    another that has one of its caption texts), directly or through others."""
    parent = list(range(len(options)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[int, int] = {}
    for item, opts in enumerate(options):
        for option in opts:
            other = owner.setdefault(keys[option], item)
            a, b = root(item), root(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [root(i) for i in range(len(options))]


def group_batches(
    options: Sequence[Sequence[int]], keys: Sequence[int], batch_size: int, *, seed: int
) -> list[int]:
    """One epoch's order: every item once, as a random one of its ``options``, in blocks of
    ``batch_size`` consecutive positions (a batch; the last one shorter) that hold at most one
    item of a group (:func:`groups_of`: items sharing a key, an image and every image with one
    of its caption texts), so no item meets a copy of itself or of its captions as a negative
    (where a group must repeat, its items take different keys when they can).

    The items are dealt over the blocks in turn, the groups largest first (each group in
    shuffled order, groups of one size in shuffled order), a full block skipped: a group
    lands in as many different blocks as it has items, while that many blocks have room. Only
    a group with more items than there are blocks must repeat in one. The blocks are then
    shuffled (the short one stays last). Seeded. Returns the picked options."""
    if batch_size < 1:
        raise ValueError(f"batch_size ({batch_size}) must be >= 1")
    if any(len(o) == 0 for o in options):
        raise ValueError("every item needs at least one option")
    n = len(options)
    if n == 0:
        return []
    rng = np.random.default_rng(seed)
    members: dict[int, list[int]] = {}
    for item, group in enumerate(groups_of(options, keys)):
        members.setdefault(group, []).append(item)
    groups = [members[g] for g in rng.permutation(sorted(members)).tolist()]
    groups.sort(key=len, reverse=True)  # stable: equal sizes stay shuffled
    blocks = -(-n // batch_size)
    room = [batch_size] * (blocks - 1) + [n - batch_size * (blocks - 1)]
    dealt: list[list[int]] = [[] for _ in range(blocks)]
    slot = 0
    for group in groups:
        for item in rng.permutation(group).tolist():
            while room[slot] == 0:
                slot = (slot + 1) % blocks
            dealt[slot].append(item)
            room[slot] -= 1
            slot = (slot + 1) % blocks
    order = [*rng.permutation(blocks - 1).tolist(), blocks - 1]
    draw = rng.random(n)
    picks = []
    for b in order:
        taken: set[int] = set()
        for item in rng.permutation(dealt[b]).tolist():
            free = [o for o in options[item] if keys[o] not in taken] or list(options[item])
            picks.append(free[int(draw[item] * len(free))])
            taken.add(keys[picks[-1]])
    return picks
