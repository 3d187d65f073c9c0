"""The records a ``--dataset`` source resolves to, and the registry of dataset layouts.

The bottom of the data layer: :mod:`mmkit.data.sources` (local paths), :mod:`mmkit.data.hf`
(Hugging Face) and the layouts (:mod:`mmkit.data.speech_commands`, :mod:`mmkit.data.ucf101`)
all build these records; layouts and aliases register here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmkit.data.splits import hash_split, split_source_of


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


Detector = Callable[[Path, SourceOptions], bool]
Reader = Callable[[Path, SourceOptions], SourceData]
_LAYOUTS: list[tuple[str, str | None, Detector, Reader]] = []
_ALIASES: dict[str, tuple[str, Callable[[SourceOptions], Path]]] = {}


def register_layout(name: str, modality: str | None, detect: Detector, read: Reader) -> None:
    """Add a directory layout, tried before the generic folder-per-class reader."""
    _LAYOUTS.append((name, modality, detect, read))


def register_alias(name: str, modality: str, fetch: Callable[[SourceOptions], Path]) -> None:
    """Add a dataset alias: ``fetch`` returns a local path (downloading it when needed)."""
    _ALIASES[name] = (modality, fetch)


def layouts() -> list[tuple[str, str | None, Detector, Reader]]:
    """The registered layouts, in registration order."""
    return list(_LAYOUTS)


def alias(name: str, modality: str) -> Callable[[SourceOptions], Path] | None:
    """The fetch function of dataset alias ``name`` for ``modality``, if there is one."""
    entry = _ALIASES.get(name)
    return entry[1] if entry and entry[0] == modality else None
