"""Deterministic splits for sources that do not name one."""

from __future__ import annotations

import hashlib

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
