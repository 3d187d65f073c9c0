"""Resolve ``--dataset SRC`` into labelled records, for audio and video classification.

See docs/design.md for the contract.

Order: a known alias, then a local path (prepared store, HF ``save_to_disk`` dir, parquet, a layout
such as Speech Commands or UCF101, a folder per class, a CSV/JSONL manifest), else a Hugging Face
hub id. Layouts and aliases register themselves in :mod:`mmkit.data.records`; the built-in ones
are imported here.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from mmkit.data import hf, speech_commands, ucf101  # noqa: F401 - the built-in layouts register
from mmkit.data.records import Record, SourceData, SourceOptions, alias, layouts
from mmkit.data.splits import normalize_split
from mmkit.errors import UserInputError


def resolve(src: str, options: SourceOptions) -> SourceData:
    """Turn ``--dataset SRC`` into records; every record gets a split."""
    fetch = alias(src, options.modality)
    if fetch is not None:
        return resolve(str(fetch(options)), options)
    path = Path(src).expanduser()
    if path.exists():
        data = read_local(path, options)
    elif src.startswith((".", "/", "~")) or src.endswith((".csv", ".jsonl", ".json")):
        raise UserInputError(f"dataset not found: {src}")
    else:
        data = hf.read_hub(src, options)
    if not data.records:
        raise UserInputError(f"no {options.modality} files found in {src}")
    return data.with_splits()


def read_local(path: Path, options: SourceOptions) -> SourceData:
    if path.is_file():
        if path.suffix.lower() in (".csv", ".jsonl"):
            return read_manifest(path, options)
        if path.suffix.lower() == ".parquet":
            return hf.read_parquet([path], options)
        raise UserInputError(
            f"{path}: expected a folder, a .csv/.jsonl manifest or a .parquet file"
        )
    if hf.is_saved_dataset(path):
        return hf.read_saved(path, options)
    parquet = sorted(path.rglob("*.parquet"))
    if parquet:
        return hf.read_parquet(parquet, options, root=path)
    for _name, modality, detect, read in layouts():
        if modality in (None, options.modality) and detect(path, options):
            return read(path, options)
    return read_folder(path, options)


def media_files(root: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Media files below ``root`` (hidden entries skipped), sorted for determinism."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in extensions
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def read_folder(root: Path, options: SourceOptions) -> SourceData:
    """``root/<label>/<file>`` or ``root/<split>/<label>/<file>``."""
    records = []
    for path in media_files(root, options.extensions):
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            continue
        split = normalize_split(parts[0]) if len(parts) >= 3 else None
        label = parts[1] if split else parts[0]  # the top class folder (nested folders allowed)
        if label.startswith("_") and label.endswith("_") and label != "_unknown_":
            continue  # e.g. _background_noise_
        records.append(Record(str(path), label, str(path.relative_to(root)), split))
    labels = sorted({r.label for r in records})
    return SourceData(records, labels, "folder")


def read_manifest(path: Path, options: SourceOptions) -> SourceData:
    """CSV or JSONL with ``path,label[,split][,group]``; paths relative to the manifest."""
    rows = _read_rows(path)
    records = []
    for n, row in enumerate(rows, start=2 if path.suffix.lower() == ".csv" else 1):
        if "path" not in row or "label" not in row:
            raise UserInputError(f"{path}:{n}: a manifest row needs 'path' and 'label' columns")
        media = Path(str(row["path"]))
        media = media if media.is_absolute() else path.parent / media
        split = row.get("split") or None
        if split is not None and normalize_split(split) is None:
            raise UserInputError(f"{path}:{n}: unknown split {split!r}")
        records.append(
            Record(
                str(media),
                str(row["label"]),
                str(row["path"]),
                normalize_split(split),
                str(row["group"]) if row.get("group") else None,
            )
        )
    labels = sorted({r.label for r in records})
    return SourceData(records, labels, "manifest")


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise UserInputError(f"{path}:{n}: invalid JSON: {exc.msg}") from exc
        return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserInputError(f"cannot read manifest {path}: {exc}") from exc
