"""Resolve ``--dataset SRC`` into labelled records, for audio and video classification.

See docs/design.md for the contract.

Order: a known alias, then a local path, read by the first dataset layout that takes it (a
CSV/JSONL manifest, HF ``save_to_disk`` dir, parquet, Speech Commands, UCF101, plugins, a folder
per class), else a Hugging Face hub id. Layouts are plugins (:func:`mmkit.registry.register_layout`;
the built-in ones are in :mod:`mmkit.data.layouts`); this module holds the readers of manifests
and class folders that :mod:`mmkit.data.layouts.generic` registers.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmkit.data import hf
from mmkit.data.records import (
    Record,
    SourceData,
    SourceOptions,
    Unusable,
    alias,
    find_layout,
    label_names,
    not_utf8,
)
from mmkit.data.splits import normalize_split
from mmkit.errors import UserInputError
from mmkit.io.files import file_problem, link_out_of, read_text, short_path, stat_problem


def resolve(src: str, options: SourceOptions) -> SourceData:
    """Turn ``--dataset SRC`` into records; every record gets a split."""
    fetch = alias(src, options.modality)
    if fetch is not None:
        return resolve(str(fetch(options)), options)
    path = local_path(src)
    if path is not None:
        data = read_local(path, options)
    elif src.startswith((".", "/", "~")) or src.endswith((".csv", ".jsonl", ".json")):
        raise UserInputError(f"dataset not found: {src}")
    else:
        data = hf.read_hub(src, options)
    if not data.records:
        raise UserInputError(f"no {options.modality} files found in {src}")
    return data.with_splits()


def local_path(src: str) -> Path | None:
    """``src`` as an existing local path (``~`` expanded), ``None`` when nothing is there; a
    name the system refuses (too long, a loop of links) is a one-line :class:`UserInputError`,
    as is anything there that is neither a folder nor a regular file (a FIFO would block)."""
    try:
        path = Path(src).expanduser()
    except RuntimeError:  # ~user of an unknown user
        path = Path(src)
    problem = stat_problem(path)
    if problem == "no such file":
        return None
    if problem is None and not path.is_dir():
        problem = file_problem(path)
    if problem is not None:
        raise UserInputError(f"dataset {short_path(src)}: {problem}")
    return path


def read_local(path: Path, options: SourceOptions) -> SourceData:
    """A local path, read by the first registered layout that takes it (:mod:`mmkit.data.layouts`:
    manifests and HF files first, a folder per class last)."""
    layout = find_layout(path, options, options.modality)
    if layout is None:
        raise UserInputError(
            f"{path}: expected a folder, a .csv/.jsonl manifest or a .parquet file"
        )
    return layout.factory(path, options)


def media_files(root: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Media files below ``root`` (hidden entries skipped), sorted for determinism. Entries
    that are not regular files (a FIFO, a dangling link) are listed too, so that decoding
    refuses them with their reason instead of leaving them out unsaid."""
    return media_listing(root, extensions)[0]


def media_listing(root: Path, extensions: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    """:func:`media_files`, and the folders below ``root`` that are symbolic links out of it:
    the listing does not enter a linked folder, and a dataset layout lists these as skipped
    (with :func:`media_file`'s reason) rather than leave their files out unsaid."""
    files, links_out = [], []
    for p in root.rglob("*"):
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if not p.is_dir():
            if p.suffix.lower() in extensions:
                files.append(p)
        elif p.is_symlink() and link_out_of(p, root) is not None:
            links_out.append(p)
    return sorted(files), sorted(links_out)


def read_folder(root: Path, options: SourceOptions) -> SourceData:
    """``root/<label>/<file>`` or ``root/<split>/<label>/<file>``."""
    records = []
    files, links_out = media_listing(root, options.extensions)
    for path in files:
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            continue
        split = normalize_split(parts[0]) if len(parts) >= 3 else None
        label = parts[1] if split else parts[0]  # the top class folder (nested folders allowed)
        if label.startswith("_") and label.endswith("_") and label != "_unknown_":
            continue  # e.g. _background_noise_
        records.append(media_record(path, root, label, str(path.relative_to(root)), split))
    records += [media_record(p, root, "", str(p.relative_to(root)), None) for p in links_out]
    return SourceData(records, label_names(records), "folder")


def media_record(
    path: Path, root: Path, label: str, name: str, split: str | None, group: str | None = None
) -> Record:
    """The record of media file ``path`` of the dataset folder ``root`` (see :func:`media_file`)."""
    source, shown = media_file(path, root, name)
    return Record(source, "" if isinstance(source, Unusable) else label, shown, split, group)


def media_file(path: Path, root: Path, name: str) -> tuple[str | Unusable, str]:
    """``(source, name)`` of media file ``path`` of the dataset folder ``root``; the source is
    :class:`Unusable` (skipped, with the reason) when the name is not UTF-8 text (then the name
    comes escaped) or a symbolic link takes the file out of ``root``."""
    escaped = not_utf8(name)
    if escaped is not None:
        return Unusable("the file name is not UTF-8 text"), escaped
    problem = link_out_of(path, root)
    return (Unusable(problem) if problem else str(path)), name


def read_manifest(path: Path, options: SourceOptions) -> SourceData:
    """CSV or JSONL with ``path,label[,split][,group]``; paths relative to the manifest. A row
    with an empty path or label is a one-line :class:`UserInputError` naming the line."""
    records = []
    for n, row in read_rows(path):
        where = f"{path}:{n}"
        if "path" not in row or "label" not in row:
            raise UserInputError(f"{where}: a manifest row needs 'path' and 'label' columns")
        name = row_value(row, "path", where)
        label = row_value(row, "label", where, subject=name)
        split = row_value(row, "split", where, required=False)
        if split is not None and normalize_split(split) is None:
            raise UserInputError(f"{where}: unknown split {split!r}")
        media = Path(name)
        media = media if media.is_absolute() else path.parent / media
        group = row_value(row, "group", where, required=False)
        records.append(media_record(media, path.parent, label, name, normalize_split(split), group))
    return SourceData(records, label_names(records), "manifest")


def row_value(
    row: dict[str, Any], key: str, where: str, *, required: bool = True, subject: str = ""
) -> str | None:
    """``row[key]`` as text: a string or an integer (a JSONL label may be a class number).
    Missing or blank is ``None``, or a :class:`UserInputError` naming ``where`` when
    ``required``; any other JSON value (a list, ``true``, ``1.5``) is an error."""
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if not required:
            return None
        about = f" for {subject}" if subject else ""
        raise UserInputError(f"{where}: empty {key!r}{about}")
    if isinstance(value, bool) or not isinstance(value, str | int):
        shown = json.dumps(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise UserInputError(f"{where}: {key!r} must be text, got {shown}")
    return str(value)


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` of a CSV (a header line first) or JSONL (one JSON object a line)
    manifest, read as UTF-8 with a leading byte-order mark dropped (Excel writes one). Anything
    else (a line that is ``5`` or ``null``, broken quoting, bytes that are not UTF-8) is a
    one-line :class:`UserInputError` naming the file and line."""
    text = read_text(path, "manifest")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            return [(reader.line_num, row) for row in reader]
        except csv.Error as exc:
            raise UserInputError(f"{path}:{reader.line_num}: {exc}") from None
    rows = []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{path}:{n}: invalid JSON: {exc.msg}") from exc
        if not isinstance(row, dict):
            shown = line.strip() if len(line.strip()) <= 40 else line.strip()[:37] + "..."
            raise UserInputError(f"{path}:{n}: expected a JSON object, got {shown}")
        rows.append((n, row))
    return rows


def expand_paths(paths: Sequence[str], extensions: tuple[str, ...]) -> list[str]:
    """Files as given; folders become every media file inside them. A name that is not there
    (or that the system refuses, such as one too long) is one :class:`UserInputError`; what is
    there but not a regular file (a FIFO) is refused by the decoder, with its reason."""
    out: list[str] = []
    for p in paths:
        problem = stat_problem(p)
        if problem is not None:
            detail = "" if problem == "no such file" else f" ({problem})"
            raise UserInputError(f"file not found: {short_path(p)}{detail}")
        path = Path(p)
        if path.is_dir():
            found = media_files(path, extensions)
            if not found:
                raise UserInputError(f"no media files in {p}")
            out.extend(str(f) for f in found)
        else:
            out.append(str(path))
    return out
