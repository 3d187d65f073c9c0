"""The records a ``--dataset`` source resolves to, the lookup of dataset layouts, and aliases.

The bottom of the data layer: :mod:`mmkit.data.sources` (local paths), :mod:`mmkit.data.hf`
(Hugging Face) and the layouts (:mod:`mmkit.data.layouts`, registered with
:func:`mmkit.registry.register_layout`) all build these records; aliases register here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmkit.data.splits import hash_split, split_source_of
from mmkit.registry import LAYOUTS, PluginSpec, load_plugins


@dataclass(frozen=True)
class Record:
    """One labelled media item: a file path or the encoded bytes of one."""

    source: str | bytes
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
