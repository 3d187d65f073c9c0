"""Deterministic splits for sources that do not name one."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


def normalize_split(name: str | None) -> str | None:
    """Map ``val``/``valid``/``dev`` to ``validation`` and friends; None stays None."""
    if name is None or name == "":
        return None
    return SPLIT_ALIASES.get(str(name).strip().lower())


def hash_split(key: str, *, validation: float = 0.1, test: float = 0.1) -> str:
    """Split by a stable hash of ``key`` (a speaker or group when known, else a file name).

    Every file of one speaker lands in one split, and adding files never moves old ones.
    """
    bucket = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    if bucket < validation:
        return "validation"
    if bucket < validation + test:
        return "test"
    return "train"


def split_source_of(records: Iterable[Any]) -> str:
    """``"dataset"`` when any record names its own split, else ``"hash"`` (mmkit split them)."""
    return "dataset" if any(getattr(r, "split", None) for r in records) else "hash"


VALIDATION_FRACTION = 0.1
MIN_ITEMS_TO_CARVE = 20


@dataclass(frozen=True)
class Carved:
    """Positions (into the train list) kept for training and carved out for validation."""

    train: list[int]
    validation: list[int]
    by: str  # "group" or "item"


def carve_validation(
    groups: Sequence[str], *, seed: int, fraction: float = VALIDATION_FRACTION
) -> Carved:
    """Carve about ``fraction`` of the train items out for validation, whole groups at a time
    (every clip of a speaker on one side) when there are several groups, else item by item.

    ``groups[i]`` is item ``i``'s group (a speaker, a source video), ``""`` when unknown. The
    choice is a seeded permutation, so the same seed carves the same items.
    """
    n = len(groups)
    target = max(1, round(n * fraction))
    g = torch.Generator().manual_seed(int(seed))
    named = sorted({x for x in groups if x})
    if len(named) >= 2 and all(groups):
        members: dict[str, list[int]] = {}
        for i, x in enumerate(groups):
            members.setdefault(x, []).append(i)
        chosen: list[int] = []
        for k in torch.randperm(len(named), generator=g).tolist():
            if len(chosen) >= target:
                break
            chosen.extend(members[named[k]])
        if len(chosen) <= 2 * target:  # a few huge groups would take too much: carve items
            val = set(chosen)
            return Carved([i for i in range(n) if i not in val], sorted(val), "group")
    order = torch.randperm(n, generator=g).tolist()
    val = set(order[:target])
    return Carved([i for i in range(n) if i not in val], sorted(val), "item")
