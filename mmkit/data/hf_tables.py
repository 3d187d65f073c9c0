"""Where Hugging Face data lives and how mmkit reads it: ``save_to_disk`` folders (their arrow
files), parquet files and hub datasets, each split as a :class:`Table` read a batch of rows at a
time with pyarrow (no conversion into the ``datasets`` cache), and :class:`RowBytes`, a row's
media bytes left in those files until the store is built. :mod:`mmkit.data.hf` turns rows into
records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmkit.data.records import Record
from mmkit.data.splits import normalize_split
from mmkit.errors import UserInputError
from mmkit.io.files import file_problem, read_text, short_path
from mmkit.io.hub import hub_offline_reason


def _datasets():
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def is_saved_dataset(path: Path) -> bool:
    """A ``save_to_disk`` directory (a Dataset or a DatasetDict)."""
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()

def saved_tables(path: Path, split: str | None) -> list[Table]:
    """The tables of a ``save_to_disk`` directory: a Dataset (``split`` names its split), or
    the splits of a DatasetDict (only ``split`` when given; one that is not there is a
    one-line :class:`UserInputError`, as is a damaged ``dataset_dict.json`` / ``state.json``)."""
    if not (path / "dataset_dict.json").is_file():
        return [_saved_table(path, split)]
    index = path / "dataset_dict.json"
    names = _json_object(index).get("splits")
    if not isinstance(names, list) or not all(isinstance(n, str) and _plain(n) for n in names):
        raise UserInputError(f"{short_path(index)}: 'splits' must list the split folders")
    return [_saved_table(path / name, name) for name in pick_split(names, split, path)]


def pick_split(names: list[str], split: str | None, where: Path) -> list[str]:
    """``names`` (the splits a dataset has), or only ``split`` when one is asked for."""
    if split is None:
        return names
    key = normalize_split(split)
    wanted = [n for n in names if n == split or (key is not None and normalize_split(n) == key)]
    if not wanted:
        raise UserInputError(
            f"{short_path(where)} has no split {split!r} (it has: {', '.join(names)})"
        )
    return wanted


def _plain(name: str) -> bool:
    """A file or folder name inside its folder (no ``/``, not ``..``): what a dataset's index
    files may name, so that they never lead out of the dataset."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def _json_object(file: Path) -> dict[str, Any]:
    """A dataset's small JSON index file as a dict; one-line :class:`UserInputError` if not."""
    text = read_text(file, "dataset file")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserInputError(
            f"{short_path(file)}: invalid JSON ({exc.msg}, line {exc.lineno})"
        ) from None
    if not isinstance(doc, dict):
        raise UserInputError(f"{short_path(file)}: expected a JSON object")
    return doc


def _saved_table(folder: Path, split: str | None) -> Table:
    state_file = folder / "state.json"
    state = _json_object(state_file)
    entries = state.get("_data_files")
    entries = entries if isinstance(entries, list) else []
    names = [e.get("filename") if isinstance(e, dict) else None for e in entries]
    if not names or not all(isinstance(n, str) and _plain(n) for n in names):
        raise UserInputError(
            f"{short_path(state_file)}: '_data_files' must name the .arrow files of its folder"
        )
    files = regular_files([folder / n for n in names], "arrow")
    if state.get("_indices_data_files"):  # a selection of rows: let datasets apply it
        try:
            dataset = _datasets().load_from_disk(str(folder))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserInputError(
                f"{short_path(folder)}: cannot load it ({_first_line(exc)})"
            ) from exc
        return Table.of_dataset(dataset, split)
    return Table(split, files, "arrow")


def parquet_tables(files: list[Path], root: Path, split: str | None) -> list[Table]:
    """One table per split of parquet ``files`` (the split from each file's name or folder
    below ``root``); ``split`` picks one (or names the split of files that name none)."""
    by_split: dict[str, list[Path]] = {}
    for f in regular_files(files):
        by_split.setdefault(_split_of(f.relative_to(root)) or "unsplit", []).append(f)
    if split is not None and list(by_split) == ["unsplit"]:
        return [Table(split, by_split["unsplit"], "parquet")]
    return [Table(s, by_split[s], "parquet") for s in pick_split(list(by_split), split, root)]


def regular_files(files: list[Path], kind: str = "parquet") -> list[Path]:
    """``files`` when each is a regular file (``datasets`` would block on a FIFO named
    ``x.parquet``); else a one-line :class:`UserInputError` naming the first that is not."""
    for f in files:
        problem = file_problem(f)
        if problem is not None:
            raise UserInputError(f"{kind} file {short_path(f)}: {problem}")
    return files


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def hub_tables(repo_id: str, hf_config: str | None, hf_split: str | None) -> list[Table]:
    """The tables of hub dataset ``repo_id`` (each split, or ``hf_split`` alone)."""
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

            with self._reading(files[0]):
                self.schema = pq.read_schema(files[0])
        else:
            with self._reading(files[0]), _arrow_stream(files[0]) as reader:
                self.schema = reader.schema

    @contextmanager
    def _reading(self, path: Path | None) -> Iterator[None]:
        """A damaged file (truncated, not parquet/arrow at all, a corrupt row group) is a
        one-line :class:`UserInputError` naming it, wherever the reading finds the damage."""
        import pyarrow as pa

        try:
            yield
        except (pa.ArrowException, OSError) as exc:
            what = f"{self.fmt} file {short_path(path)}" if path else "the dataset"
            raise UserInputError(f"{what}: cannot be read ({_first_line(exc)})") from exc

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
        try:
            return _datasets().Features.from_arrow_schema(self.schema)
        except (ValueError, KeyError, TypeError) as exc:  # garbled "huggingface" metadata
            where = short_path(self.files[0]) if self.files else "the dataset"
            raise UserInputError(
                f"{where}: unreadable feature metadata ({_first_line(exc)})"
            ) from exc

    def batches(self, columns: list[str], size: int = BATCH_ROWS) -> Iterator[dict[str, list]]:
        """``{column: values}`` for up to ``size`` rows at a time, in order. Text that is not
        UTF-8 comes as its ``bytes`` (for the caller to refuse), not as an exception."""
        import pyarrow.parquet as pq

        if self.dataset is not None:
            with self._reading(None):
                for batch in self.dataset.select_columns(columns).with_format("arrow").iter(size):
                    yield _pydict(batch)
            return
        for path in self.files:
            with self._reading(path):
                if self.fmt == "parquet":
                    with pq.ParquetFile(path, memory_map=False) as f:
                        for batch in f.iter_batches(batch_size=size, columns=columns):
                            yield _pydict(batch)
                    continue
                with _arrow_stream(path) as reader:
                    for batch in reader:
                        for start in range(0, batch.num_rows, size):
                            yield _pydict(batch.slice(start, size).select(columns))

    def rows(self, columns: list[str]) -> Iterator[dict[str, Any]]:
        """Each row as ``{column: value}`` (as :meth:`batches` reads them), in order."""
        for batch in self.batches(columns):
            for values in zip(*batch.values(), strict=True):
                yield dict(zip(batch, values, strict=True))


def _pydict(batch: Any) -> dict[str, list]:
    """A record batch (or table) as ``{column: values}``, with text columns (and lists of text)
    read as bytes first: a value that is not UTF-8 stays ``bytes``, the others become ``str``."""
    import pyarrow as pa

    def text(t: Any) -> bool:
        return pa.types.is_string(t) or pa.types.is_large_string(t)

    out = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        kind = column.type
        if text(kind):
            out[name] = [_utf8(v) for v in column.cast(pa.large_binary()).to_pylist()]
        elif pa.types.is_list(kind) and text(kind.value_type):
            rows = column.cast(pa.list_(pa.large_binary())).to_pylist()
            out[name] = [None if r is None else [_utf8(v) for v in r] for r in rows]
        else:
            out[name] = column.to_pylist()
    return out


def _utf8(value: bytes | None) -> str | bytes | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


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
    forward pass per table, so records must come in row order, as
    :func:`mmkit.data.hf.from_tables` makes them); paths and bytes pass through."""
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
