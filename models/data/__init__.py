"""Where a run's images come from: `data.source` = auto | cache | stream | shards.

cache and stream decode the same pixels (models.image_cache.decode_resized), so the choice is left
out of the config hash and a run gives the same predictions with either. `auto` takes the cache
while it is small enough (CACHE_LIMIT_GIB and half the free disk) and streams above that; a
training set given as a shard folder (python -m core.shards) is read as shards.
"""
import logging
import os
import shutil
from pathlib import Path

from core.errors import DataError
from models.data.sources import CacheSource, ImageSource, StreamSource, as_source  # noqa: F401

# The cache pays off while it stays in the page cache: it is decoded once, then every epoch reads
# memory instead of decoding. 32 GiB of (N, S, S, 3) uint8 fits a 64-128 GB training host's RAM
# next to the model (~225k images at 224 px, ~95k at 336; the demo's 1,500 at 64 px are 18 MB,
# Kaggle's 16k test images at 224 px 2.4 GB). Above it (2M images at 336 px: 677 GB) each epoch
# would read random rows from disk, the build alone costs one epoch of decoding and the disk
# must hold it all, while decode workers keep a GPU fed: stream.
CACHE_LIMIT_GIB = 32
CACHE_DISK_FRACTION = 0.5  # and never more than half the free disk where the cache goes
_log = logging.getLogger(__name__)


def cache_bytes(n_images, size):
    return n_images * size * size * 3


def free_disk(path):
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def choose_source(kind, n_images, size, cache_dir, train_dir=None, is_shards=False):
    """The source `kind` resolves to for a dataset of `n_images` at `size` px."""
    if is_shards:
        if kind not in ("auto", "shards"):
            raise DataError(train_dir, f"data.source {kind} reads image files; this is a shard folder "
                                       f"(use data.source: shards or auto)")
        return "shards"
    if kind == "shards":
        raise DataError(train_dir, "data.source shards needs data.train to be a shard folder with manifest.json "
                                   "(write one with `python -m core.shards --data DIR --out SHARDS`)")
    if kind != "auto":
        return kind
    limit = min(CACHE_LIMIT_GIB * 2**30, CACHE_DISK_FRACTION * free_disk(cache_dir))
    return "cache" if cache_bytes(n_images, size) <= limit else "stream"


def default_workers(world_size=1):
    """Decode processes per training process: its share of the cores, at most 8."""
    return max(1, min(8, (os.cpu_count() or 1) // max(1, world_size)))


def open_source(kind, frame, cfg, env, progress=True):
    """The source for a dataset frame (imgId, path[, shard, pos]); `kind` as resolved by `choose_source`."""
    from models.distributed import barrier

    size, interp = cfg["image"]["size"], cfg["image"]["interpolation"]
    workers = cfg["data"]["workers"] if cfg["data"]["workers"] is not None else default_workers(env.world_size)
    if kind == "cache":
        from models.image_cache import build_image_cache

        images = None
        if env.is_main:  # one process decodes; the others open the finished cache after the barrier
            images = build_image_cache(frame["path"], size, cfg["data"]["cache_dir"], interp, progress=progress)
        barrier(env)
        if images is None:
            images = build_image_cache(frame["path"], size, cfg["data"]["cache_dir"], interp, progress=False)
        return CacheSource(images)
    if kind == "stream":
        return StreamSource(frame["path"].tolist(), frame["imgId"].tolist(), size, interp, workers)
    if kind == "shards":
        from models.data.shards import ShardSource

        return ShardSource(frame, size, interp, workers, cfg["data"]["shuffle_buffer"])
    raise ValueError(f"unknown image source {kind!r}")
