"""Hugging Face sources as labelled records: hub ids, ``save_to_disk`` directories and parquet
files, whose tables :mod:`mmkit.data.hf_tables` finds and reads.

Media columns are read with ``decode=False`` (datasets 5 would decode through torchcodec) and handed
to mmkit's own decoders as ``bytes`` (or a path when the row has no bytes). ``ClassLabel`` names are
kept; a ``speaker_id``/``group`` column becomes the group for hash splits.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from mmkit.data.hf_tables import RowBytes, Table, hub_tables
from mmkit.data.records import Record, SourceData, SourceOptions, Unusable, label_names
from mmkit.data.splits import normalize_split
from mmkit.errors import UserInputError
from mmkit.io.files import link_out_of, path_exists, short_path

MEDIA_COLUMNS = {
    "audio": ("audio", "file", "path", "wav"),
    "video": ("video", "file", "path", "clip"),
    "image": ("image", "img", "file", "path"),
}
GROUP_COLUMNS = ("speaker_id", "speaker", "group", "client_id", "source")



def read_hub(repo_id: str, options: SourceOptions) -> SourceData:
    """A hub dataset id (``org/name``); needs the network unless it is in the HF cache."""
    tables = hub_tables(repo_id, options.hf_config, options.hf_split)
    return from_tables(tables, options, "hf_hub", base=None)


def from_tables(
    tables: list[Table], options: SourceOptions, kind: str, base: Path | None
) -> SourceData:
    records: list[Record] = []
    labels: list[str] | None = None
    for table in tables:
        split_name = table.split
        column = media_column(table, options)
        if options.label_column not in table.column_names:
            raise UserInputError(
                f"no label column {options.label_column!r} "
                f"(columns: {', '.join(table.column_names)})"
                "; pass --label-column"
            )
        names = class_names(table, options.label_column)
        if names is not None:
            labels = names
        group_col = next((c for c in GROUP_COLUMNS if c in table.column_names), None)
        split = normalize_split(split_name) if split_name else None
        wanted = list(dict.fromkeys(c for c in (column, options.label_column, group_col) if c))
        row_n = -1
        for batch in table.batches(wanted):
            for media, label_value, group_value in zip(
                batch[column],
                batch[options.label_column],
                batch[group_col] if group_col else [None] * len(batch[column]),
                strict=True,
            ):
                row_n += 1
                fallback = f"{split_name or 'row'}-{row_n}"
                label = label_text(label_value, names, table, options.label_column)
                source, name = media_source(media, base, fallback)
                if isinstance(label, Unusable) and not isinstance(source, Unusable):
                    source, label = label, ""
                if isinstance(source, bytes):  # read again when the store is built
                    digest = hashlib.sha1(source).hexdigest()
                    source = RowBytes(table, column, row_n, digest)
                group = str(group_value) if group_value is not None else None
                records.append(Record(source, label or "", name, split, group))
    return SourceData(records, labels if labels is not None else label_names(records), kind)


def class_names(table: Table, column: str) -> list[str] | None:
    """The names of ``column`` when it is a ``ClassLabel``, else ``None``."""
    names = getattr(table.features[column], "names", None)
    return [str(n) for n in names] if names is not None else None


def label_text(value: Any, names: list[str] | None, table: Table, column: str) -> str | Unusable:
    """A row's class name: a ``ClassLabel`` number's name, a string, an integer (or an integral
    float, as pandas stores integers with gaps) as text. A row without a usable one is
    :class:`Unusable` (skipped, with the reason); a column that holds no class labels at all
    (lists, fractions) is a one-line :class:`UserInputError`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Unusable("no label (null)")
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Unusable(f"the label is not UTF-8 text (byte {exc.start})")
    if names is not None:
        if isinstance(value, int) and 0 <= value < len(names):
            return names[value]
        if value == -1:
            return Unusable("unlabelled (ClassLabel -1)")
        return Unusable(f"label {value!r} is not one of the {len(names)} ClassLabel classes")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        return value.strip() or Unusable("empty label")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    where = short_path(table.files[0]) if table.files else "the dataset"
    raise UserInputError(
        f"{where}: label column {column!r} holds {shown}, not a class name or number; "
        "pass --label-column"
    )


def media_column(part: Any, options: SourceOptions) -> str:
    """The media column of a :class:`Table`: ``--<modality>-column``, else the first column
    typed or named for the modality; else a one-line :class:`UserInputError`."""
    if options.media_column:
        if options.media_column not in part.column_names:
            raise UserInputError(
                f"no column {options.media_column!r} (columns: {', '.join(part.column_names)})"
            )
        return options.media_column
    typed = [c for c, f in part.features.items() if type(f).__name__.lower() == options.modality]
    named = [c for c in MEDIA_COLUMNS.get(options.modality, ()) if c in part.column_names]
    if typed or named:
        return (typed or named)[0]
    raise UserInputError(
        f"no {options.modality} column found (columns: {', '.join(part.column_names)}); "
        f"pass --{options.modality}-column"
    )


def media_source(value: Any, base: Path | None, fallback: str) -> tuple[Any, str]:
    """A row's media as ``(bytes or path, name)``; :class:`Unusable` (skipped, with the reason)
    for a row without media (null, no bytes and no path, 0 bytes) and for a relative path that
    a symbolic link takes out of ``base``."""
    path: Any = None
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
    elif isinstance(value, bytes):
        data = value
    else:
        data, path = None, value
    name = str(path) if isinstance(path, str) and path else fallback
    if data:
        return bytes(data), name
    if not isinstance(path, str) or not path:
        what = "0 bytes of media" if data is not None else "no media (no bytes and no path)"
        return Unusable(what), name
    p = Path(path)
    if not p.is_absolute() and base is not None and path_exists(base / p):
        p = base / p
        problem = link_out_of(p, base)
        if problem is not None:
            return Unusable(problem), name
    if data is not None and not path_exists(p):
        return Unusable(f"0 bytes of media, and no file at its path {short_path(path, 80)}"), name
    return str(p), name
