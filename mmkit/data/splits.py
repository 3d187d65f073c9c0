"""Splits: deterministic ones for sources that do not name one, the validation items of a
training run and the items ``eval`` scores."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mmkit.data.store import Store
from mmkit.errors import UserInputError
from mmkit.events import Progress

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


@dataclass(frozen=True)
class Splits:
    """Train and validation indices into a store, and how validation was formed."""

    train: list[int]
    validation: list[int]
    info: dict[str, Any]  # recorded in the checkpoint's config.json under data.validation


def training_splits(store: Store, dataset: str, progress: Progress, *, seed: int = 0) -> Splits:
    """Train and validation indices. Validation is the dataset's validation split, else about a
    tenth of train carved out (whole speakers/groups when known, seeded), else — for a train
    split under 20 items — train itself, with a warning. It is never the test split."""
    train_idx, val_idx = store.indices("train"), store.indices("validation")
    if not train_idx:
        raise UserInputError(f"{dataset}: the train split is empty")
    if val_idx:
        info = {"source": "validation split", "num_items": len(val_idx)}
        return Splits(train_idx, val_idx, info)
    if len(train_idx) < MIN_ITEMS_TO_CARVE:
        progress.message(
            f"warning: no validation split and only {len(train_idx)} train items: validating "
            "on the train split (the best checkpoint is chosen on data it trained on)"
        )
        return Splits(train_idx, train_idx, {"source": "train", "num_items": len(train_idx)})
    carved = carve_validation([store.items[i].group for i in train_idx], seed=seed)
    info = {
        "source": "carved from train",
        "by": carved.by,
        "fraction": VALIDATION_FRACTION,
        "seed": seed,
        "num_items": len(carved.validation),
    }
    progress.message(
        f"no validation split: validating on {len(carved.validation)} of the "
        f"{len(train_idx)} train items (by {carved.by}, seed {seed}); the test split is not used"
    )
    return Splits(
        [train_idx[i] for i in carved.train], [train_idx[i] for i in carved.validation], info
    )


EVAL_SPLITS = ("auto", "test", "validation", "train", "all")


@dataclass(frozen=True)
class EvalSelection:
    split: str  # the split scored: test, validation, train or all
    indices: list[int]
    note: str  # one line for the user: what was scored and why


def eval_selection(
    store: Store, split: str | None, trained_fingerprint: str | None
) -> EvalSelection:
    """Which items ``eval`` scores. ``all`` scores everything. ``auto`` (the default): a dataset
    with splits of its own is scored on its test split; one without (``store.split_source ==
    "hash"``) is scored whole, unless it is the very dataset the checkpoint was trained on (same
    fingerprint), whose held-back test part is scored instead."""
    split = split or "auto"
    if split not in EVAL_SPLITS:
        raise UserInputError(f"--split must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    everything = list(range(len(store)))
    same = trained_fingerprint is not None and store.meta.get("fingerprint") == trained_fingerprint
    if split == "all":
        return EvalSelection(
            "all", everything, f"scoring all {len(everything)} items (--split all)"
        )
    if split == "auto" and store.split_source == "hash" and not same:
        return EvalSelection(
            "all",
            everything,
            f"the dataset has no splits of its own: scoring all {len(everything)} items",
        )
    name = "test" if split == "auto" else split
    indices = store.indices(name)
    if not indices:
        hint = "; use --split all to score every item" if name == "test" else ""
        raise UserInputError(
            f"{store.meta.get('dataset', store.path)}: the {name} split is empty{hint}"
        )
    if same and store.split_source == "hash":
        note = (
            f"this is the dataset the checkpoint was trained on: scoring the {len(indices)} items "
            f"of the {name} part training held back"
        )
    elif store.split_source == "hash":
        note = (
            f"the dataset has no splits of its own: scoring mmkit's hash {name} split "
            f"({len(indices)} items)"
        )
    else:
        note = f"scoring the {name} split ({len(indices)} items)"
    return EvalSelection(name, indices, note)
