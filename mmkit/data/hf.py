"""Hugging Face sources: hub ids, ``save_to_disk`` directories and parquet files.

Media columns are read with ``decode=False`` (datasets 5 would decode through torchcodec) and handed
to mmkit's own decoders as ``bytes`` (or a path when the row has no bytes). ``ClassLabel`` names are
kept; a ``speaker_id``/``group`` column becomes the group for hash splits.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmkit.data.records import Record, SourceData, SourceOptions
from mmkit.data.splits import normalize_split
from mmkit.errors import UserInputError
from mmkit.io.files import file_problem, path_exists, short_path
from mmkit.io.hub import hub_offline_reason

MEDIA_COLUMNS = {
    "audio": ("audio", "file", "path", "wav"),
    "video": ("video", "file", "path", "clip"),
    "image": ("image", "img", "file", "path"),
}
GROUP_COLUMNS = ("speaker_id", "speaker", "group", "client_id", "source")


def _datasets():
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def is_saved_dataset(path: Path) -> bool:
    """A ``save_to_disk`` directory (a Dataset or a DatasetDict)."""
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def read_saved(path: Path, options: SourceOptions) -> SourceData:
    """A ``save_to_disk`` directory, read from its arrow files (see :class:`Table`)."""
    return _from_tables(saved_tables(path, options.hf_split), options, "hf_disk", base=path)


def saved_tables(path: Path, split: str | None = None) -> list[Table]:
    """A ``save_to_disk`` directory as one :class:`Table` per split (``split`` names the one
    of a lone Dataset)."""
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        return [_saved_table(path / name, name) for name in splits]
    return [_saved_table(path, split)]


def _saved_table(folder: Path, split: str | None) -> Table:
    state = json.loads((folder / "state.json").read_text())
    files = [folder / f["filename"] for f in state["_data_files"]]
    if state.get("_indices_data_files"):  # a selection of rows: let datasets apply it
        return Table.of_dataset(_datasets().load_from_disk(str(folder)), split)
    return Table(split, regular_files(files), "arrow")


def read_parquet(files: list[Path], options: SourceOptions, root: Path | None = None) -> SourceData:
    """Parquet files; the split comes from each file's name or folder below ``root``. Read with
    pyarrow, a row group at a time (no conversion into the ``datasets`` cache)."""
    root = root or files[0].parent
    return _from_tables(parquet_tables(files, root), options, "hf_parquet", base=root)


def parquet_tables(files: list[Path], root: Path) -> list[Table]:
    """Parquet files as one :class:`Table` per split, named by each file's name or folder below
    ``root`` (``"unsplit"`` when nothing names one)."""
    by_split: dict[str, list[Path]] = {}
    for f in regular_files(files):
        by_split.setdefault(_split_of(f.relative_to(root)) or "unsplit", []).append(f)
    return [Table(split, group, "parquet") for split, group in by_split.items()]


def regular_files(files: list[Path]) -> list[Path]:
    """``files`` when each is a regular file (``datasets`` would block on a FIFO named
    ``x.parquet``); else a one-line :class:`UserInputError` naming the first that is not."""
    for f in files:
        problem = file_problem(f)
        if problem is not None:
            raise UserInputError(f"parquet file {short_path(f)}: {problem}")
    return files


def read_hub(repo_id: str, options: SourceOptions) -> SourceData:
    """A hub dataset id (``org/name``); needs the network unless it is in the HF cache."""
    tables = hub_tables(repo_id, options.hf_config, options.hf_split)
    return _from_tables(tables, options, "hf_hub", base=None)


def hub_tables(repo_id: str, hf_config: str | None, hf_split: str | None) -> list[Table]:
    """A hub dataset (:func:`load_hub`) as one :class:`Table` per split."""
    ds = load_hub(repo_id, hf_config, hf_split)
    parts = ds.items() if isinstance(ds, _datasets().DatasetDict) else [(hf_split, ds)]
    return [Table.of_dataset(part, split) for split, part in parts]


def load_hub(repo_id: str, hf_config: str | None, hf_split: str | None) -> Any:
    """``datasets.load_dataset(repo_id)``; failures (offline, unknown id) become one-line
    :class:`UserInputError`s. Without a network the hub's offline mode is switched on first
    (:func:`hub_offline_reason`), so a cached dataset loads and any other fails at once."""
    offline = hub_offline_reason()
    datasets = _datasets()
    try:
        return datasets.load_dataset(repo_id, name=hf_config, split=hf_split)
    except FileNotFoundError as exc:
        raise UserInputError(f"dataset not found: {repo_id} (not a local path or hub id)") from exc
    except (ConnectionError, OSError, ValueError) as exc:
        if offline and isinstance(exc, ConnectionError):
            raise UserInputError(
                f"cannot load hub dataset {repo_id!r}: {offline}, and it is not in the local cache"
            ) from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserInputError(f"cannot load hub dataset {repo_id!r}: {first}") from exc


def _split_of(relative: Path) -> str | None:
    """``train-00000-of-00001.parquet`` -> train; ``test/x.parquet`` -> test; else None (hashed).

    Only the path below the dataset root counts: folders above it name nothing.
    """
    for part in (relative.stem, *reversed(relative.parent.parts)):
        head = re.split(r"[-_.]", part.lower(), maxsplit=1)[0]
        if normalize_split(head):
            return head
    return None


BATCH_ROWS = 64  # rows per batch when a table is read


class Table:
    """One split of a Hugging Face dataset as the files that hold it (parquet, or the arrow
    stream files of ``save_to_disk`` and the ``datasets`` cache), read in record batches.

    Files are read with plain reads, never memory-mapped, so a pass over a dataset of any size
    holds one batch at a time: resident memory does not grow with the dataset.
    """

    def __init__(self, split: str | None, files: list[Path], fmt: str, dataset: Any = None) -> None:
        self.split, self.files, self.fmt, self.dataset = split, files, fmt, dataset
        if dataset is not None:
            self.schema = dataset.data.schema
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            self.schema = pq.read_schema(files[0])
        else:
            with _arrow_stream(files[0]) as reader:
                self.schema = reader.schema

    @classmethod
    def of_dataset(cls, ds: Any, split: str | None) -> Table:
        """A ``datasets.Dataset``: its cache files when it is their plain rows, else itself."""
        files = [Path(f["filename"]) for f in ds.cache_files]
        if files and ds._indices is None and all(f.is_file() for f in files):
            return cls(split, files, "arrow")
        return cls(split, [], "dataset", dataset=ds)

    @property
    def column_names(self) -> list[str]:
        return list(self.schema.names)

    @property
    def features(self) -> Any:
        """``datasets.Features`` from the schema (ClassLabel names, Audio/Video/Image types)."""
        return _datasets().Features.from_arrow_schema(self.schema)

    def batches(self, columns: list[str], size: int = BATCH_ROWS) -> Iterator[dict[str, list]]:
        """``{column: values}`` for up to ``size`` rows at a time, in order."""
        import pyarrow.parquet as pq

        if self.dataset is not None:
            for batch in self.dataset.select_columns(columns).with_format("arrow").iter(size):
                yield batch.to_pydict()
            return
        for path in self.files:
            if self.fmt == "parquet":
                with pq.ParquetFile(path, memory_map=False) as f:
                    for batch in f.iter_batches(batch_size=size, columns=columns):
                        yield batch.to_pydict()
                continue
            with _arrow_stream(path) as reader:
                for batch in reader:
                    for start in range(0, batch.num_rows, size):
                        yield batch.slice(start, size).select(columns).to_pydict()


@contextmanager
def _arrow_stream(path: Path) -> Iterator[Any]:
    import pyarrow as pa

    with pa.OSFile(str(path)) as f:
        yield pa.ipc.open_stream(f)


@dataclass(frozen=True, eq=False)
class RowBytes:
    """A row's media bytes, left in the dataset's files until the store is built (see
    :func:`stream_sources`); ``stamp`` is their SHA-1, the content's fingerprint."""

    table: Table
    column: str
    row: int
    stamp: str


def stream_sources(records: Iterable[Record]) -> Iterator[str | bytes]:
    """Each record's media source, in order: a :class:`RowBytes` is read from its table (one
    forward pass per table, so records must come in row order, as :func:`_from_tables` makes
    them); paths and bytes pass through."""
    cursors: dict[int, _Cursor] = {}
    for record in records:
        source = record.source
        if isinstance(source, RowBytes):
            cursor = cursors.get(id(source.table))
            if cursor is None or cursor.row > source.row:
                cursor = cursors[id(source.table)] = _Cursor(source.table, source.column)
            source = cursor.read(source.row)
        yield source


class _Cursor:
    """Forward-only reader of one column of a table, a batch at a time."""

    def __init__(self, table: Table, column: str) -> None:
        self.batches = table.batches([column])
        self.column = column
        self.values: list[Any] = []
        self.start = 0  # row number of values[0]
        self.row = 0  # the next row to read

    def read(self, row: int) -> bytes:
        while row >= self.start + len(self.values):
            self.start += len(self.values)
            self.values = next(self.batches)[self.column]
        self.row = row + 1
        value = self.values[row - self.start]
        return bytes(value["bytes"] if isinstance(value, dict) else value)


def _from_tables(
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
        names = getattr(table.features[options.label_column], "names", None)
        if names is not None:
            labels = list(names)
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
                if names is not None and not 0 <= label_value < len(names):
                    continue  # HF marks unlabelled rows (e.g. hidden test labels) with -1
                label = names[label_value] if names else str(label_value)
                fallback = f"{split_name or 'row'}-{row_n}"
                source, name = media_source(media, base, fallback)
                if isinstance(source, bytes):  # read again when the store is built
                    digest = hashlib.sha1(source).hexdigest()
                    source = RowBytes(table, column, row_n, digest)
                group = str(group_value) if group_value is not None else None
                records.append(Record(source, label, name, split, group))
    if labels is None:
        labels = sorted({r.label for r in records})
    return SourceData(records, labels, kind)


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


def media_source(value: Any, base: Path | None, fallback: str) -> tuple[str | bytes, str]:
    """``(bytes or path, name)`` of a media cell (``{"bytes", "path"}``, bytes or a path
    string, relative to ``base`` when it is there); ``fallback`` names rows without a path."""
    if isinstance(value, dict):
        path = value.get("path")
        if value.get("bytes"):
            return bytes(value["bytes"]), str(path or fallback)
        value = path
    if isinstance(value, bytes):
        return value, fallback
    if isinstance(value, str) and value:
        p = Path(value)
        if not p.is_absolute() and base is not None and path_exists(base / p):
            p = base / p
        return str(p), value
    raise UserInputError(f"row {fallback}: empty media value")
