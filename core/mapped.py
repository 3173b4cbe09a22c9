"""Memory-mapped arrays read in chunks: give the pages a chunk touched back to the kernel.

A read-only np.memmap keeps every page the process touched in its resident set until the map is
closed, so one pass over a 3.6 GiB bank (a 5M x 384 float16 .npy) adds 3.6 GiB to ru_maxrss even
when only one chunk is in use. MADV_DONTNEED on a read-only file mapping only unmaps the pages:
their data stay in the page cache, and the next read maps them again without disk I/O.
"""
import mmap

import numpy as np


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
