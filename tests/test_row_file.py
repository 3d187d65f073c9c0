"""mmkit.data.row_file: the store's rows read with pread, indexed as numpy indexes them."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest

from mmkit.data.row_file import RowFile


@pytest.fixture()
def rows(tmp_path: Path) -> tuple[RowFile, np.ndarray]:
    data = np.arange(50 * 3 * 2, dtype=np.int16).reshape(50, 3, 2)
    path = tmp_path / "data.bin"
    data.tofile(path)
    return RowFile(path, np.int16, data.shape), data


@pytest.mark.parametrize(
    "key",
    [slice(0, 50), slice(3, 9), slice(7, 7), slice(45, None), 0, 49, -1, np.int64(12),
     np.array([4, 2, 4, 9]), np.array([[0, 49], [25, 1]]), np.array([], dtype=np.int64),
     np.arange(10, 14)],
)
def test_indexing_is_numpys(rows, key) -> None:
    reader, data = rows
    got = reader[key]
    np.testing.assert_array_equal(got, data[key])
    assert got.dtype == data.dtype and got.flags.writeable


def test_whole_array_and_length(rows) -> None:
    reader, data = rows
    assert len(reader) == 50
    np.testing.assert_array_equal(reader[40:60], data[40:60])  # a slice stops at the end
    np.testing.assert_array_equal(np.asarray(reader), data)


def test_out_of_range_rows_are_index_errors(rows) -> None:
    reader, _ = rows
    for key in (50, -51, np.array([3, 50]), np.array([-1, 2])):
        with pytest.raises(IndexError):
            reader[key]
    with pytest.raises(IndexError, match="no step"):
        reader[0:10:2]


def test_a_file_shorter_than_its_rows_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "short.bin"
    np.arange(10, dtype=np.int16).tofile(path)
    with pytest.raises(OSError, match="ends 10 bytes early"):
        RowFile(path, np.int16, (20, 1))[5:15]


def _first_rows(reader: RowFile) -> list[int]:
    return reader[0:2].reshape(-1).tolist()


def test_pickled_and_forked_readers_open_their_own_file(rows) -> None:
    reader, data = rows
    reader[0]  # opened in this process
    again = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(again[5:8], data[5:8])
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_first_rows, (reader,)) == data[0:2].reshape(-1).tolist()
