"""Memory-mapped arrays read in chunks: give the pages a chunk touched back to the kernel.

A read-only np.memmap keeps every page the process touched in its resident set until the map is
closed, so one pass over a 3.6 GiB bank (a 5M x 384 float16 .npy) adds 3.6 GiB to ru_maxrss even
when only one chunk is in use. MADV_DONTNEED on a read-only file mapping only unmaps the pages:
their data stay in the page cache, and the next read maps them again without disk I/O.

Random rows need more care: with large page-cache folios (2 MiB on this machine's 6.18 kernel) one
row's page fault maps its whole folio, so 4,096 random rows of a 1M-row bank mapped 0.7 GiB, nearly
all of it. take_rows reads them GATHER_ROWS at a time, dropping the pages after each batch.
"""
import mmap

import numpy as np

GATHER_ROWS = 64  # random rows read between drops: <= 128 MiB mapped with 2 MiB folios


def _read_only_mapping(array):
    """The mmap.mmap under `array` (a np.memmap or a view of one) when it maps the file read-only, else None."""
    a = array
    while isinstance(a, np.ndarray):
        if isinstance(a.base, mmap.mmap):
            # np.memmap(mode="r") is the only read-only array over an mmap: mode "c" (copy-on-write) is
            # writeable, and there MADV_DONTNEED would discard the process's private changes
            return None if a.flags.writeable else a.base
        a = a.base
    return None


def drop_mapped_pages(array):
    """Unmap the resident pages of the read-only file mapping under `array` (whole mapping); True if it had one.

    Call it after a chunk of a memory-mapped array has been copied out: reading on maps the pages again."""
    mm = _read_only_mapping(array)
    if mm is None or not hasattr(mmap, "MADV_DONTNEED"):  # not memory-mapped, or no madvise (Windows)
        return False
    mm.madvise(mmap.MADV_DONTNEED)
    return True


def take_rows(array, index):
    """array[index] (integer row positions of any shape) as a new array; from a read-only memory map GATHER_ROWS
    rows at a time, its pages dropped after each batch (bounded resident memory, the same values)."""
    index = np.asarray(index)
    if _read_only_mapping(array) is None:
        return array[index]
    flat = index.ravel()
    out = np.empty((len(flat),) + array.shape[1:], dtype=array.dtype)
    for s in range(0, len(flat), GATHER_ROWS):
        out[s:s + GATHER_ROWS] = array[flat[s:s + GATHER_ROWS]]
        drop_mapped_pages(array)
    return out.reshape(index.shape + array.shape[1:])
