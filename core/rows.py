"""Rows of big .npy files (float32 or float16), read in chunks and on demand.

Reading 2,000,000 OOF rows x 4 models through memory maps keeps every touched page in the
process's resident set until the map is closed (ru_maxrss counts it), so the sequential case
uses plain file reads instead: only the current chunk of each file is resident. A file whose
rows are in another order than the reader's is read through a short-lived memory map per chunk.
Rows come back as float32 whatever the file stores.
"""
from pathlib import Path

import numpy as np

from core.errors import DataError

CHUNK_ROWS = 16384


class NpyRows:
    """A 2-D float .npy file as read-only rows; `order[i]` is the file row that serves row i."""

    def __init__(self, path, order=None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(self.path, "missing")
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
                self.offset = f.tell()
        except (ValueError, OSError) as e:
            raise DataError(self.path, f"not a readable .npy file ({e})") from e
        if len(shape) != 2 or fortran or dtype.kind != "f":
            raise DataError(self.path, f"expected a 2-D C-ordered float array, found shape {shape} dtype {dtype}"
                                       f"{' (Fortran order)' if fortran else ''}")
        self.file_rows, self.dim = int(shape[0]), int(shape[1])
        self.file_dtype = np.dtype(dtype)
        expected = self.offset + self.file_rows * self.dim * self.file_dtype.itemsize
        if self.path.stat().st_size < expected:
            raise DataError(self.path, f"truncated: {self.path.stat().st_size} bytes, the header promises {expected}")
        self.order = None if order is None else np.asarray(order, dtype=np.int64)
        if self.order is not None and self.order.size and (self.order.min() < 0 or self.order.max() >= self.file_rows):
            raise ValueError(f"{self.path}: row order points outside the file's {self.file_rows} rows")

    @property
    def shape(self):
        return (self.file_rows if self.order is None else len(self.order), self.dim)

    @property
    def dtype(self):
        return np.dtype(np.float32)

    ndim = 2

    def __len__(self):
        return self.shape[0]

    def _file_rows(self, start, stop):
        count = (stop - start) * self.dim
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self.dim * self.file_dtype.itemsize)
            flat = np.fromfile(f, dtype=self.file_dtype, count=count)
        return flat.reshape(stop - start, self.dim).astype(np.float32, copy=False)

    def _gather(self, rows):
        mm = np.load(self.path, mmap_mode="r")  # closed on return: its pages leave the resident set
        try:
            return np.array(mm[rows], dtype=np.float32)
        finally:
            del mm

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("only contiguous row slices")
            if self.order is None:
                return self._file_rows(start, max(start, stop))
            return self._gather(self.order[start:stop])
        rows = np.asarray(key)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64)
        return self._gather(rows if self.order is None else self.order[rows])

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[:], dtype=dtype)


def chunks(n, size=CHUNK_ROWS):
    """(start, stop) ranges covering 0..n."""
    for s in range(0, n, size):
        yield s, min(s + size, n)


def id_order(file_ids, ids, path):
    """None when the file lists `ids` in that order, else the file row of each id (DataError if one is absent)."""
    if list(file_ids) == list(ids):
        return None
    pos = {i: k for k, i in enumerate(file_ids)}
    missing = [i for i in ids if i not in pos]
    if missing:
        raise DataError(path, f"{len(missing)} imgIds of the runs are not listed here, e.g. {missing[:3]}")
    return np.fromiter((pos[i] for i in ids), dtype=np.int64, count=len(ids))
