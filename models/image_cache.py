"""Decode + resize every image once into a uint8 memory-mapped array at the training resolution.

Decoding 512-px PNGs dominates at 100k+ images; after the first pass every epoch reads
(N, S, S, 3) uint8 rows from a memory-mapped .npy and augments batched tensors instead.

    work/cache/<key>.npy    uint8 (N, S, S, 3), row i = paths[i]
    work/cache/<key>.json   what it holds (paths, size, interpolation)

The key hashes each file's path, byte size and mtime, the size, the interpolation and the decode
rules' version (core.images.DECODE_VERSION), so a changed image, setting or rule builds a new
cache. The array is filled in a temporary file and renamed into place: a killed build leaves no
valid-looking cache.
"""
import argparse
import os
import sys
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from core.dataset import DECODE_VERSION, load_dataset, open_image
from core.errors import DataError, exit_on_input_error
from core.images import INTERPOLATION, square_resize
from core.io import atomic_path, sha256_json, write_json


def decode_resized(src, size, interpolation="bicubic"):
    """RGB uint8 (size, size, 3): center square crop, then resize. `src`: a path or a binary file object.

    Every source (cache, stream, shards) decodes through this one function, so they give the same pixels."""
    return np.asarray(square_resize(open_image(src), size, interpolation), dtype=np.uint8)


def cache_key(paths, size, interpolation):
    stats = []
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError as e:
            raise DataError(p, "image file not found") from e
        stats.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    # the decode rules' version: a rule that changes some file's pixels rebuilds the cache
    return sha256_json({"files": stats, "size": size, "interpolation": interpolation, "decode": DECODE_VERSION})[:24]


def _decode_job(args):
    i, path, size, interpolation = args
    return i, decode_resized(path, size, interpolation)


def build_image_cache(paths, size, cache_dir="work/cache", interpolation="bicubic", workers=None, progress=True):
    """Return a read-only memmap (N, size, size, 3) of the images, building it if needed."""
    from tqdm import tqdm

    paths = [str(p) for p in paths]
    cache_dir = Path(cache_dir)
    key = cache_key(paths, size, interpolation)
    array_path = cache_dir / f"{key}.npy"
    if array_path.is_file():
        return np.load(array_path, mmap_mode="r")
    cache_dir.mkdir(parents=True, exist_ok=True)
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    jobs = [(i, p, size, interpolation) for i, p in enumerate(paths)]
    with atomic_path(array_path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
        bar = tqdm(total=len(paths), desc=f"cache {size}px", unit="img", disable=not progress)
        if workers > 1 and len(paths) > 64:
            with get_context("spawn").Pool(workers) as pool:
                for i, arr in pool.imap_unordered(_decode_job, jobs, chunksize=32):
                    out[i] = arr
                    bar.update()
        else:
            for job in jobs:
                i, arr = _decode_job(job)
                out[i] = arr
                bar.update()
        bar.close()
        out.flush()
        del out
    write_json(cache_dir / f"{key}.json", {"n": len(paths), "size": size, "interpolation": interpolation,
                                           "first": paths[:3]})
    return np.load(array_path, mmap_mode="r")


@exit_on_input_error
def main(argv=None):
    ap = argparse.ArgumentParser(description="Build the uint8 image cache of a dataset folder.")
    ap.add_argument("data", help="dataset folder (images/ [+ prompts.csv])")
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--cache-dir", default="work/cache")
    ap.add_argument("--interpolation", default="bicubic", choices=sorted(INTERPOLATION))
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    frame = load_dataset(args.data)
    arr = build_image_cache(frame["path"], args.size, args.cache_dir, args.interpolation, args.workers)
    print(f"cache {arr.filename}: {arr.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
