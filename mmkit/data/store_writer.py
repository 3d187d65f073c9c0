"""Writing a prepared store (:mod:`mmkit.data.store` describes the layout and reads it back):
append decoded arrays, commit atomically; with ``resume``, in committed chunks that a later
writer continues after a kill."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mmkit.data.frame_codec import ENDS, EncodedFrames, encode_jpeg, frame_format
from mmkit.data.store import FORMAT_VERSION, MANIFEST, Store, StoreItem
from mmkit.errors import UserInputError
from mmkit.io.atomic import (
    hold_lock,
    partial_dir_for,
    recover_dir,
    replace_dir,
    temp_dir_for,
    write_text_atomic,
)
from mmkit.io.files import writing

_PARTIAL, _CHUNK, _LOCK = "partial.json", "chunk-{:06d}.json", "lock"  # resumable writers


class StoreWriter:
    """Append decoded arrays, then :meth:`commit` to move the finished store into place.

    With ``resume`` (a key naming what is written, e.g. the source fingerprint) the writer works
    in ``.<out>.partial`` (:func:`~mmkit.io.atomic.partial_dir_for`, locked while it writes) and
    :meth:`checkpoint` commits what was added so far as one chunk file (``chunk-NNNNNN.json``:
    the items and skips of the chunk, how many records have been written and where ``data.bin``
    ends), after ``data.bin`` is flushed to disk. A writer opened later with the same key
    continues after the last chunk (``records`` says how many ``add``/``skip`` calls it
    already holds; ``kept`` which of them were added); data past that chunk is cut off. The
    committed store is the same as one written in one go.

    ``params["frame_format"] == "jpeg"`` (:mod:`~mmkit.data.frame_codec`) writes a format 2
    store: :meth:`add` takes :class:`~mmkit.data.frame_codec.EncodedFrames` (or frames, which
    it encodes) and records each frame's end in ``frames.bin``.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        modality: str,
        dtype: str,
        item_shape: tuple[int, ...],
        params: dict[str, Any],
        resume: str | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self._chunks = 0
        with self._writing():
            self.out_dir.parent.mkdir(parents=True, exist_ok=True)
            recover_dir(self.out_dir)
        self.dtype = np.dtype(dtype)
        self.item_shape = tuple(item_shape)
        self.jpeg = frame_format(params) == "jpeg"
        if self.jpeg and (self.dtype != np.uint8 or self.item_shape[2:] != (3,)):
            raise ValueError(f"jpeg frames must be uint8 [H, W, 3], not {dtype} {item_shape}")
        self.meta: dict[str, Any] = {
            "format_version": 2 if self.jpeg else FORMAT_VERSION,
            "modality": modality,
            "dtype": self.dtype.str,
            "item_shape": list(self.item_shape),
            "params": params,
        }
        self.items: list[StoreItem] = []
        self.skipped: list[dict[str, str]] = []
        self.extras: dict[str, dict[str, Any]] = {}
        self.kept: list[int] = []  # record positions (add/skip calls) that were added
        self.records = 0
        self._offset = 0  # rows (samples, frames) written
        self._bytes = 0  # jpeg: bytes written to data.bin
        self._ends: Any = None  # jpeg: frames.bin
        self._committed = (0, 0, 0)  # records, items, skipped at the last chunk
        self._lock: int | None = None
        with self._writing():
            if resume is None:
                self._tmp = temp_dir_for(self.out_dir)
                try:
                    self._open("wb")
                except BaseException:
                    shutil.rmtree(self._tmp, ignore_errors=True)
                    raise
            else:
                self._tmp = partial_dir_for(self.out_dir)
                self._tmp.mkdir(exist_ok=True)
                self._lock = hold_lock(self._tmp / _LOCK, f"{self.out_dir} (being prepared)")
                self._open_partial(resume)

    @property
    def item_bytes(self) -> int:
        return self.dtype.itemsize * int(np.prod(self.item_shape, dtype=np.int64))

    def _open(self, mode: str) -> None:
        """Open ``data.bin`` (and a jpeg store's ``frames.bin``); closed in commit/abort."""
        self._data = open(self._tmp / "data.bin", mode)  # noqa: SIM115
        if self.jpeg:
            self._ends = open(self._tmp / ENDS, mode)  # noqa: SIM115

    def _data_end(self, length: int) -> int | None:
        """Bytes of ``data.bin`` that hold the first ``length`` rows; None when the files in
        the partial directory hold fewer."""
        try:
            if self.jpeg:
                ends = self._tmp / ENDS
                if ends.stat().st_size < 8 * length:
                    return None
                offset = 8 * (length - 1)
                needed = int(np.fromfile(ends, np.int64, 1, offset=offset)[0]) if length else 0
            else:
                needed = length * self.item_bytes
            return needed if (self._tmp / "data.bin").stat().st_size >= needed else None
        except (OSError, ValueError, IndexError):
            return None

    def _open_partial(self, key: str) -> None:
        """The files of the partial directory, after the chunks of an earlier writer with
        the same ``key`` and ``meta`` are read back (anything else there is removed)."""
        state = {"key": key, "meta": self.meta}
        try:
            same = json.loads((self._tmp / _PARTIAL).read_text()) == state
        except (OSError, ValueError):
            same = False
        if same and self._data_end(0) is not None:
            while self._read_chunk(self._tmp / _CHUNK.format(self._chunks)):
                self._chunks += 1
            self._committed = (self.records, len(self.items), len(self.skipped))
            self._bytes = self._data_end(self._offset) or 0
            self._open("r+b")
            for f, size in ((self._data, self._bytes), (self._ends, 8 * self._offset)):
                if f is not None:
                    f.truncate(size)
                    f.seek(0, os.SEEK_END)
            return
        for entry in self._tmp.iterdir():
            if entry.name != _LOCK:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        write_text_atomic(self._tmp / _PARTIAL, json.dumps(state))
        self._open("wb")

    def _read_chunk(self, path: Path) -> bool:
        """Take in one chunk file; False when it is missing, damaged or not backed by data."""
        try:
            chunk = json.loads(path.read_text())
            items = [StoreItem(**i) for i in chunk["items"]]
            records, length = int(chunk["records"]), int(chunk["length"])
            kept, skipped = [int(k) for k in chunk["kept"]], list(chunk["skipped"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if records < self.records or self._data_end(length) is None:
            return False
        self.items += items
        self.skipped += skipped
        self.kept += kept
        self.records, self._offset = records, length
        return True

    def add(
        self,
        array: np.ndarray | EncodedFrames,
        *,
        name: str,
        label: str,
        split: str,
        group: str,
    ) -> None:
        if self.jpeg and not isinstance(array, EncodedFrames):
            array = encode_jpeg(
                np.asarray(array, dtype=np.uint8), self.meta["params"]["jpeg_quality"]
            )
        if isinstance(array, EncodedFrames) != self.jpeg:
            raise ValueError("JPEG frames go into a jpeg store only")
        if not isinstance(array, EncodedFrames):
            array = np.ascontiguousarray(array, dtype=self.dtype)
        shape = array.shape if isinstance(array, EncodedFrames) else array.shape[1:]
        if tuple(shape) != self.item_shape:
            raise ValueError(f"item shape {tuple(shape)} != store item shape {self.item_shape}")
        with self._writing():
            if isinstance(array, EncodedFrames):
                ends = self._bytes + np.cumsum(array.sizes, dtype=np.int64)
                self._data.write(array.data)
                self._ends.write(ends.tobytes())
                self._bytes = int(ends[-1]) if len(ends) else self._bytes
            else:
                self._data.write(array.tobytes())
        self.items.append(StoreItem(name, label, split, group, self._offset, len(array)))
        self._offset += len(array)
        self.kept.append(self.records)
        self.records += 1

    def skip(self, name: str, reason: str) -> None:
        self.skipped.append({"name": name, "reason": reason})
        self.records += 1

    @property
    def pending(self) -> int:
        """Records added or skipped since the last :meth:`checkpoint`."""
        return self.records - self._committed[0]

    def checkpoint(self) -> None:
        """Commit what was added since the last chunk (resumable writers; a no-op otherwise)."""
        if self._lock is None or not self.pending:
            return
        _, items, skipped = self._committed
        for f in (self._data, self._ends):
            if f is not None:
                f.flush()
                os.fsync(f.fileno())
        chunk = {
            "records": self.records,
            "length": self._offset,
            "items": [asdict(i) for i in self.items[items:]],
            "skipped": self.skipped[skipped:],
            "kept": self.kept[items:],
        }
        write_text_atomic(self._tmp / _CHUNK.format(self._chunks), json.dumps(chunk))
        self._chunks += 1
        self._committed = (self.records, len(self.items), len(self.skipped))

    def add_extra(self, key: str, array: np.ndarray) -> None:
        """Store a whole extra array (e.g. background noise clips) next to the items."""
        array = np.ascontiguousarray(array)
        with self._writing():
            np.save(self._tmp / f"{key}.npy", array, allow_pickle=False)
        self.extras[key] = {"dtype": array.dtype.str, "shape": list(array.shape)}

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A full disk or a read-only folder: one line naming the store (the previous one, if
        any, stays as it was: nothing replaces it before :meth:`commit`), and where the items
        a resumable writer committed wait for the next one."""
        try:
            with writing(self.out_dir, "the prepared store"):
                yield
        except UserInputError as exc:
            if not self._chunks:
                raise
            kept = f"{partial_dir_for(self.out_dir).name} keeps what was decoded for the next run"
            raise UserInputError(f"{exc}; {kept}") from exc.__cause__

    def commit(self, labels: list[str], **info: Any) -> Store:
        with self._writing():
            self._commit(labels, info)
        return Store(self.out_dir)

    def _commit(self, labels: list[str], info: dict[str, Any]) -> None:
        self._close()
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
        if self._lock is not None:  # the store holds what a fresh one would, nothing more
            for chunk in self._tmp.glob(_CHUNK.replace("{:06d}", "*")):
                chunk.unlink()
            (self._tmp / _PARTIAL).unlink(missing_ok=True)
            (self._tmp / _LOCK).unlink(missing_ok=True)
        replace_dir(self._tmp, self.out_dir)
        self._release()

    def abort(self) -> None:
        """Stop writing: a plain writer removes its temporary directory; a resumable one keeps
        its committed chunks for the next writer with the same key (and removes its directory
        when it committed none: there is nothing to continue from)."""
        with contextlib.suppress(OSError):  # the disk is full: what is buffered is lost anyway
            self._close()
        if self._lock is None or not self._chunks:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._release()

    def _close(self) -> None:
        try:
            self._data.close()
        finally:
            if self._ends is not None:
                self._ends.close()

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
