"""Rows of one shape and dtype in a file, read with ``pread``: the read side of ``data.bin``.

A memory map would do the same job, but every page an epoch touches stays in the reading
process's resident set: over an epoch of a 3.4 GB Speech Commands store a loader worker's RSS
grew by the store's size. ``pread`` reads into fresh arrays through the page cache, so the memory
a process holds stays that of its batches, whatever the store's size. Indexing is numpy's, for
what the store needs: ``rows[a:b]`` (contiguous rows), ``rows[i]`` and ``rows[int_array]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

# a gather of scattered rows reads their whole span when it is at most this many times the rows
# asked for (one call), else row by row
SPAN_FACTOR = 4


class RowFile:
    """``shape[0]`` rows of ``shape[1:]`` ``dtype`` values, back to back in ``path``."""

    def __init__(self, path: Path, dtype: Any, shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.shape = Path(path), np.dtype(dtype), tuple(shape)
        self.row_shape = self.shape[1:]
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))
        self._fd: int | None = None
        self._pid = -1

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict[str, Any]:  # a descriptor does not cross processes
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        rows = self.read(0, len(self))
        return rows if dtype is None else rows.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("row slices take no step")
            return self.read(start, max(start, stop))
        if isinstance(key, int | np.integer):
            i = int(key) + (len(self) if key < 0 else 0)
            return self.read(i, i + 1)[0]
        return self.take(np.asarray(key, dtype=np.int64))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as a new array."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"rows {start}:{stop} out of 0:{len(self)} in {self.path}")
        out = np.empty((stop - start, *self.row_shape), dtype=self.dtype)
        self._read_into(out, start)
        return out

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (any shape) as ``[*rows.shape, *row_shape]``: their span in one read
        when they lie close together, else one read per row."""
        if rows.size == 0:
            return np.empty((*rows.shape, *self.row_shape), dtype=self.dtype)
        lo, hi = int(rows.min()), int(rows.max()) + 1
        if lo < 0 or hi > len(self):
            raise IndexError(f"rows {lo}:{hi} out of 0:{len(self)} in {self.path}")
        if hi - lo <= SPAN_FACTOR * rows.size:
            return self.read(lo, hi)[rows - lo]
        flat = rows.reshape(-1)
        out = np.empty((flat.size, *self.row_shape), dtype=self.dtype)
        for k, row in enumerate(flat.tolist()):
            self._read_into(out[k : k + 1], row)
        return out.reshape(*rows.shape, *self.row_shape)

    def _descriptor(self) -> int:
        if self._pid != os.getpid():  # first use, or a forked loader worker: its own descriptor
            self._fd, self._pid = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC), os.getpid()
        assert self._fd is not None
        return self._fd

    def _read_into(self, out: np.ndarray, row: int) -> None:
        if out.size == 0:
            return
        view = memoryview(out).cast("B")
        offset, done = row * self.row_bytes, 0
        while done < len(view):
            n = os.preadv(self._descriptor(), [view[done:]], offset + done)
            if n == 0:
                raise OSError(f"{self.path}: ends {len(view) - done} bytes early")
            done += n
