"""The prepared store: media decoded once into one array on disk plus a JSON manifest.

Items are ragged along their first axis (audio clips of different lengths, videos with different
frame counts) and share the trailing shape (``()`` for mono int16 audio, ``(H, W, 3)`` for frames)::

    store/
      mmkit_store.json   modality, dtype, item shape, decode params, labels, items, skipped files
      data.bin           every item's array, back to back
      <extra>.npy        optional extra arrays (e.g. background noise), listed in the manifest

A store of frames may keep them JPEG-compressed (``params["frame_format"] == "jpeg"``,
``format_version`` 2, :mod:`mmkit.data.frame_codec`): ``data.bin`` then holds one JPEG per frame
and ``frames.bin`` where each ends; :meth:`Store.take` decodes only the frames asked for.
Format 1 stores (raw) are written and read as before.

Epochs read slices of ``data.bin``, never media. A store is written into a temporary directory and
renamed into place, so an interrupted ``prepare`` never leaves a half store behind; ``prepare``
writes in committed chunks (:class:`~mmkit.data.store_writer.StoreWriter` ``resume``), so
running it again after a kill decodes only what was not committed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmkit.data.frame_codec import ENDS, decode_jpeg, frame_format
from mmkit.data.row_file import RowFile
from mmkit.errors import UserInputError
from mmkit.events import Progress
from mmkit.io.files import file_problem

MANIFEST = "mmkit_store.json"
FORMAT_VERSION = 1  # raw stores; 2: frames kept as JPEG (the version a reader needs)
FORMAT_VERSIONS = {1: ("raw",), 2: ("jpeg",)}
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class StoreItem:
    name: str
    label: str
    split: str
    group: str
    offset: int
    length: int


def is_store(path: str | Path) -> bool:
    """Whether ``path`` is a prepared store (any name, even one the system refuses, answers)."""
    return file_problem(Path(path) / MANIFEST) is None


_DTYPES = ("<i2", "|u1", "<f4")
_MAX_MANIFEST_BYTES = 2 * 1024**3


def read_manifest(path: Path) -> dict[str, Any]:
    """A store manifest, checked key by key (one-line :class:`UserInputError` naming the file
    and the key): a damaged or hand-edited store never reaches numpy as garbage."""

    def bad(key: str, what: str) -> UserInputError:
        return UserInputError(f"{path}: {key} {what}")

    try:
        if path.stat().st_size > _MAX_MANIFEST_BYTES:
            raise bad("file", "is too large for a store manifest")
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{path}: not a readable store manifest ({exc})") from exc
    if not isinstance(meta, dict):
        raise bad("the top level", "must be a JSON object")
    version = meta.get("format_version")
    if not _count(version) or version not in FORMAT_VERSIONS:
        raise bad("format_version", f"is {version!r}, not 1 or 2")
    if meta.get("dtype") not in _DTYPES:
        raise bad("dtype", f"must be one of {', '.join(_DTYPES)}")
    shape = meta.get("item_shape")
    if not isinstance(shape, list) or not all(_count(d) for d in shape) or len(shape) > 4:
        raise bad("item_shape", "must be a short list of non-negative integers")
    for key in ("modality",):
        if not isinstance(meta.get(key), str):
            raise bad(key, "must be a string")
    for key, kind in (("params", dict), ("labels", list), ("items", list), ("skipped", list)):
        if not isinstance(meta.get(key), kind):
            raise bad(key, f"must be a JSON {'object' if kind is dict else 'list'}")
    if frame_format(meta["params"]) not in FORMAT_VERSIONS[version]:
        raise bad("params.frame_format", f"must be {FORMAT_VERSIONS[version][0]} in a "
                  f"format {version} store")  # fmt: skip
    if version == 2 and (meta["dtype"] != "|u1" or len(shape) != 3 or shape[2] != 3):
        raise bad("item_shape", "of a jpeg store must be uint8 [H, W, 3]")
    labels = meta["labels"]
    if not all(isinstance(x, str) for x in labels) or len(set(labels)) != len(labels):
        raise bad("labels", "must be distinct strings")
    total = meta.get("total_length")
    if not _count(total):
        raise bad("total_length", "must be a non-negative integer")
    known = set(labels)
    for n, item in enumerate(meta["items"]):
        if (
            not isinstance(item, dict)
            or set(item) != {"name", "label", "split", "group", "offset", "length"}
            or not all(isinstance(item[k], str) for k in ("name", "label", "split", "group"))
            or not _count(item["offset"])
            or not _count(item["length"])
        ):
            raise bad(f"items[{n}]", "is not a store item")
        if item["offset"] + item["length"] > total:
            raise bad(f"items[{n}]", f"reaches past total_length {total}")
        if item["label"] not in known:
            raise bad(f"items[{n}].label", f"{item['label']!r} is not in labels")
    extras = meta.get("extras", {})
    if not isinstance(extras, dict) or not all(
        isinstance(k, str) and k.isidentifier() for k in extras
    ):
        raise bad("extras", "must map plain names to arrays")
    return meta


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def open_cached(path: Path, fingerprint: str, progress: Progress) -> Store | None:
    """The store at ``path`` if it was built from the same source (``fingerprint``); None when
    there is none, it is stale, or it is damaged (then it is rebuilt, with a note)."""
    if not is_store(path):
        return None
    try:
        store = Store(path)
    except UserInputError as exc:
        progress.message(f"preparing again: the cached store is damaged ({exc})")
        return None
    if store.meta.get("fingerprint") != fingerprint:
        return None
    skipped = len(store.skipped)
    note = f"; {skipped} files were skipped when it was built" if skipped else ""
    progress.message(f"using prepared store {path}{note}")
    return store


class Store:
    """Read side of a prepared store. ``store[i]`` is item ``i``'s array (read from disk)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not is_store(self.path):
            raise UserInputError(f"{self.path} is not a prepared mmkit store (no {MANIFEST})")
        self.meta = read_manifest(self.path / MANIFEST)
        self.items = [StoreItem(**i) for i in self.meta["items"]]
        self.labels: list[str] = self.meta["labels"]
        self.item_shape = tuple(self.meta["item_shape"])
        self.frame_format = frame_format(self.params)
        total = int(self.meta["total_length"])
        dtype = np.dtype(self.meta["dtype"])
        self.ends: np.ndarray | None = None  # jpeg: where each frame ends in data.bin
        if self.frame_format == "jpeg":
            self.ends = np.asarray(_rows(self.path / ENDS, total * 8, np.int64, (total,)))
            if total and (self.ends[0] < 0 or np.any(np.diff(self.ends) < 0)):
                raise _damaged(self.path / ENDS, "frame offsets that go backwards")
            needed = int(self.ends[-1]) if total else 0
            self.data = _rows(self.path / "data.bin", needed, np.uint8, (needed,))
        else:
            needed = total * dtype.itemsize * int(np.prod(self.item_shape, dtype=np.int64))
            self.data = _rows(self.path / "data.bin", needed, dtype, (total, *self.item_shape))
        index = {name: i for i, name in enumerate(self.labels)}
        self.targets = np.array([index[i.label] for i in self.items], dtype=np.int64)

    @property
    def modality(self) -> str:
        return self.meta["modality"]

    @property
    def params(self) -> dict[str, Any]:
        return self.meta["params"]

    @property
    def skipped(self) -> list[dict[str, str]]:
        return self.meta["skipped"]

    @property
    def split_source(self) -> str:
        """``"dataset"``: the source named the splits; ``"hash"``: mmkit hashed them."""
        return self.meta.get("split_source", "dataset")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> np.ndarray:
        """Item ``i``'s array, read from ``data.bin`` (raw) or every frame decoded (jpeg)."""
        item = self.items[i]
        if self.ends is not None:
            return self.take(i, np.arange(item.length))
        return self.data[item.offset : item.offset + item.length]

    def take(self, i: int, indices: np.ndarray) -> np.ndarray:
        """Rows ``indices`` (any shape, within item ``i``) of item ``i``, as a new array of
        shape ``[*indices.shape, *item_shape]``; a jpeg store decodes just those frames."""
        item = self.items[i]
        if self.ends is not None:
            return decode_jpeg(self.data, self.ends, item.offset, indices, self.item_shape)
        return self.data[item.offset + np.asarray(indices, dtype=np.int64)]

    def extra(self, key: str) -> np.ndarray | None:
        if key not in self.meta.get("extras", {}):
            return None
        path = self.path / f"{key}.npy"
        try:
            array = np.load(path, allow_pickle=False)  # an object array (a pickle) is refused
        except (OSError, ValueError, EOFError) as exc:
            raise UserInputError(f"{path}: not a plain numeric array ({exc})") from exc
        if array.dtype.kind not in "biuf":
            raise UserInputError(f"{path}: not a plain numeric array (dtype {array.dtype})")
        return array

    def indices(self, split: str) -> list[int]:
        return [i for i, item in enumerate(self.items) if item.split == split]

    def summary(self) -> dict[str, Any]:
        """Counts per split and label, for the ``prepare`` report."""
        counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
        lengths: dict[str, int] = {}
        for item in self.items:
            per = counts.setdefault(item.split, {})
            per[item.label] = per.get(item.label, 0) + 1
            lengths[item.split] = lengths.get(item.split, 0) + item.length
        rate = self.params.get("sample_rate") or self.params.get("fps")
        extra = {"seconds": {s: n / rate for s, n in lengths.items()}} if rate else {}
        return {
            "path": str(self.path),
            "modality": self.modality,
            "num_items": len(self),
            "labels": self.labels,
            "split_source": self.split_source,
            "splits": {s: sum(c.values()) for s, c in counts.items()},
            "per_class": counts,
            "skipped": self.skipped,
            "params": self.params,
            **extra,
        }


def _damaged(path: Path, what: str) -> UserInputError:
    return UserInputError(f"{path}: {what}; the store is damaged (delete it and prepare again)")


def _rows(path: Path, needed: int, dtype: Any, shape: tuple[int, ...]) -> Any:
    """``path`` read as ``shape`` (:class:`~mmkit.data.row_file.RowFile`; zeros when empty),
    checked to hold ``needed`` bytes first."""
    size = path.stat().st_size if path.is_file() else -1
    if size < needed:
        raise _damaged(path, f"holds {max(size, 0)} bytes but {MANIFEST} describes {needed}")
    if not needed:
        return np.zeros(shape, dtype=dtype)
    return RowFile(path, dtype, shape)
