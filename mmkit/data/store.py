"""The prepared store: media decoded once into one memory-mapped array plus a JSON manifest.

Items are ragged along their first axis (audio clips of different lengths, videos with different
frame counts) and share the trailing shape (``()`` for mono int16 audio, ``(H, W, 3)`` for frames)::

    store/
      mmkit_store.json   modality, dtype, item shape, decode params, labels, items, skipped files
      data.bin           every item's array, back to back
      <extra>.npy        optional extra arrays (e.g. background noise), listed in the manifest

Epochs read slices of ``data.bin``, never media. A store is written into a temporary directory and
renamed into place, so an interrupted ``prepare`` never leaves a half store behind.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmkit.errors import UserInputError
from mmkit.io.atomic import recover_dir, replace_dir, temp_dir_for

MANIFEST = "mmkit_store.json"
FORMAT_VERSION = 1
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
    return (Path(path) / MANIFEST).is_file()


class StoreWriter:
    """Append decoded arrays, then :meth:`commit` to move the finished store into place."""

    def __init__(
        self,
        out_dir: str | Path,
        *,
        modality: str,
        dtype: str,
        item_shape: tuple[int, ...],
        params: dict[str, Any],
    ) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        recover_dir(self.out_dir)
        self._tmp = temp_dir_for(self.out_dir)
        self._data = open(self._tmp / "data.bin", "wb")  # noqa: SIM115 - closed in commit/abort
        self.dtype = np.dtype(dtype)
        self.item_shape = tuple(item_shape)
        self.meta: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "modality": modality,
            "dtype": self.dtype.str,
            "item_shape": list(self.item_shape),
            "params": params,
        }
        self.items: list[StoreItem] = []
        self.skipped: list[dict[str, str]] = []
        self.extras: dict[str, dict[str, Any]] = {}
        self._offset = 0

    def add(self, array: np.ndarray, *, name: str, label: str, split: str, group: str) -> None:
        array = np.ascontiguousarray(array, dtype=self.dtype)
        if array.shape[1:] != self.item_shape:
            raise ValueError(f"item shape {array.shape[1:]} != store item shape {self.item_shape}")
        self._data.write(array.tobytes())
        self.items.append(StoreItem(name, label, split, group, self._offset, int(array.shape[0])))
        self._offset += int(array.shape[0])

    def skip(self, name: str, reason: str) -> None:
        self.skipped.append({"name": name, "reason": reason})

    def add_extra(self, key: str, array: np.ndarray) -> None:
        """Store a whole extra array (e.g. background noise clips) next to the items."""
        array = np.ascontiguousarray(array)
        np.save(self._tmp / f"{key}.npy", array, allow_pickle=False)
        self.extras[key] = {"dtype": array.dtype.str, "shape": list(array.shape)}

    def commit(self, labels: list[str], **info: Any) -> Store:
        self._data.close()
        manifest = dict(
            self.meta,
            labels=list(labels),
            num_items=len(self.items),
            total_length=self._offset,
            items=[asdict(i) for i in self.items],
            skipped=self.skipped,
            extras=self.extras,
            **info,
        )
        (self._tmp / MANIFEST).write_text(json.dumps(manifest))
        replace_dir(self._tmp, self.out_dir)
        return Store(self.out_dir)

    def abort(self) -> None:
        self._data.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


class Store:
    """Read side of a prepared store. ``store[i]`` is item ``i``'s array (a memory-map view)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not is_store(self.path):
            raise UserInputError(f"{self.path} is not a prepared mmkit store (no {MANIFEST})")
        self.meta: dict[str, Any] = json.loads((self.path / MANIFEST).read_text())
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise UserInputError(f"{self.path}: store format {self.meta.get('format_version')}")
        self.items = [StoreItem(**i) for i in self.meta["items"]]
        self.labels: list[str] = self.meta["labels"]
        self.item_shape = tuple(self.meta["item_shape"])
        total = int(self.meta["total_length"])
        dtype = np.dtype(self.meta["dtype"])
        if total:
            self.data = np.memmap(
                self.path / "data.bin", dtype=dtype, mode="r", shape=(total, *self.item_shape)
            )
        else:
            self.data = np.zeros((0, *self.item_shape), dtype=dtype)
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
        item = self.items[i]
        return self.data[item.offset : item.offset + item.length]

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
