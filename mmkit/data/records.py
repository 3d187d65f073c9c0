"""The records a ``--dataset`` source resolves to, the lookup of dataset layouts, and aliases.

The bottom of the data layer: :mod:`mmkit.data.sources` (local paths), :mod:`mmkit.data.hf`
(Hugging Face) and the layouts (:mod:`mmkit.data.layouts`, registered with
:func:`mmkit.registry.register_layout`) all build these records; aliases register here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmkit.data.splits import hash_split, split_source_of
from mmkit.registry import LAYOUTS, PluginSpec, load_plugins


@dataclass(frozen=True)
class Unusable:
    """The source of a row or file that a dataset lists but mmkit cannot use (no media, no
    label, a link out of the dataset folder, ...): the store lists it as skipped with
    ``reason``, as it lists a file that does not decode, and never opens anything for it."""

    reason: str


@dataclass(frozen=True)
class Record:
    """One labelled media item: a file path or the encoded bytes of one (or :class:`Unusable`)."""

    source: str | bytes | Any
    label: str
    name: str
    split: str | None = None
    group: str | None = None


@dataclass
class SourceData:
    """What a source resolves to: records with splits, the label order and extras."""

    records: list[Record]
    labels: list[str]
    kind: str
    noise_files: list[str] = field(default_factory=list)
    split_source: str = "dataset"  # or "hash": no record named a split; mmkit hashed them

    def with_splits(self) -> SourceData:
        """Give every record without a split a deterministic hash split (by group, else name)."""
        records = [
            r
            if r.split
            else Record(r.source, r.label, r.name, hash_split(r.group or r.name), r.group)
            for r in self.records
        ]
        return SourceData(
            records, self.labels, self.kind, self.noise_files, split_source_of(self.records)
        )


@dataclass(frozen=True)
class SourceOptions:
    """How to read a source: which files count, and HF column names."""

    modality: str
    extensions: tuple[str, ...]
    hf_config: str | None = None
    hf_split: str | None = None
    media_column: str | None = None
    label_column: str = "label"
    extra: dict[str, Any] = field(default_factory=dict)


def label_names(records: Iterable[Any]) -> list[str]:
    """The class names of the usable ``records`` (empty labels left out): in numeric order
    when every one is an integer (``2`` before ``10``), else sorted."""
    names = {r.label for r in records if r.label and not isinstance(r.source, Unusable)}
    if all(re.fullmatch(r"-?\d+", n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


def not_utf8(path: str | Path) -> str | None:
    """``None`` when the name of ``path`` is UTF-8 text; else that name with its other bytes
    escaped (``caf\\xe9.wav``): a name JSON and the store manifest cannot carry as it is."""
    raw = os.fsencode(str(path))
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")
    return None


_ALIASES: dict[str, tuple[str, Callable[[SourceOptions], Path]]] = {}


def find_layout(path: Path, options: Any, modality: str) -> PluginSpec | None:
    """The first registered layout of ``modality`` whose ``detect`` accepts ``path`` (plugins
    load first); ``spec.factory(path, options)`` reads it."""
    return next((s for s in LAYOUTS.in_order(modality) if s.detect(path, options)), None)


def register_alias(name: str, modality: str, fetch: Callable[[SourceOptions], Path]) -> None:
    """Add a dataset alias: ``fetch`` returns a local path (downloading it when needed)."""
    _ALIASES[name] = (modality, fetch)


def alias(name: str, modality: str) -> Callable[[SourceOptions], Path] | None:
    """The fetch function of dataset alias ``name`` for ``modality``, if there is one (plugins,
    which may register aliases, load first)."""
    load_plugins()
    entry = _ALIASES.get(name)
    return entry[1] if entry and entry[0] == modality else None
