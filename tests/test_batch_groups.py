"""group_batches: an epoch's order in which no batch holds two images that share a caption."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from benchmarks.batch_groups import group_batches, groups_of


def _renders(n_items: int, n_scenes: int, seed: int) -> tuple[list[list[int]], list[int], list]:
    """Renders of scenes, as the image-text protocol draws them: each image takes its scene's
    canonical caption and one of three rephrasings; scene frequencies are uneven. Returns each
    image's options, each option's text, each image's scene."""
    rng = np.random.default_rng(seed)
    weights = rng.random(n_scenes) + 0.2
    scenes = rng.choice(n_scenes, size=n_items, p=weights / weights.sum()).tolist()
    options, keys = [], []
    for i, scene in enumerate(scenes):
        keys += [4 * scene, 4 * scene + 1 + int(rng.integers(3))]
        options.append([2 * i, 2 * i + 1])
    return options, keys, scenes


def test_groups_link_images_through_shared_captions():
    # 0-1 share text 10, 1-2 share 11: one group; 3 alone; 4 shares 12 with itself only
    options = [[0], [1, 2], [3], [4], [5, 6]]
    keys = [10, 10, 11, 11, 13, 12, 12]
    groups = groups_of(options, keys)
    assert groups[0] == groups[1] == groups[2]
    assert len({groups[0], groups[3], groups[4]}) == 3


@pytest.mark.parametrize(("n_items", "n_scenes", "batch"), [(300, 40, 8), (744, 110, 32)])
def test_no_batch_holds_two_images_of_one_group(n_items, n_scenes, batch):
    options, keys, scenes = _renders(n_items, n_scenes, seed=n_items)
    picks = group_batches(options, keys, batch, seed=5)
    assert sorted(p // 2 for p in picks) == list(range(n_items))  # every image once
    blocks = [picks[i : i + batch] for i in range(0, len(picks), batch)]
    assert [len(b) for b in blocks[:-1]] == [batch] * (len(blocks) - 1)
    largest = max(collections.Counter(scenes).values())
    assert largest <= len(blocks)  # the case where no repeat is needed
    for block in blocks:
        assert len({scenes[p // 2] for p in block}) == len(block)
        assert len({keys[p] for p in block}) == len(block)
    # a plain shuffle would put renders of one scene together
    shuffled = np.random.default_rng(0).permutation(n_items).tolist()
    plain = [shuffled[i : i + batch] for i in range(0, n_items, batch)]
    assert any(len({scenes[i] for i in b}) < len(b) for b in plain)
    assert len({p % 2 for p in picks}) == 2  # both captions get picked
    assert group_batches(options, keys, batch, seed=5) == picks  # seeded
    assert group_batches(options, keys, batch, seed=6) != picks


def test_a_group_larger_than_the_blocks_spreads_evenly():
    """Nine renders of one scene in three batches: three in each, not five in one."""
    options = [[i] for i in range(12)]
    keys = [0] * 9 + [1, 2, 3]
    picks = group_batches(options, keys, 4, seed=0)
    assert sorted(picks) == list(range(12))
    assert [sum(keys[p] == 0 for p in picks[i : i + 4]) for i in (0, 4, 8)] == [3, 3, 3]
    assert group_batches([], [], 4, seed=0) == []
    with pytest.raises(ValueError, match="batch_size"):
        group_batches(options, keys, 0, seed=0)
