"""Image sources: lists of batches (arrays of row indices) in, float (B, 3, S, S) tensors in [0, 1] on the device out.

    CacheSource   rows of the uint8 memory-mapped cache (models/image_cache.py), read on the main process
    StreamSource  DataLoader worker processes decode + resize each image through `decode_resized` (the
                  cache's pixels, bit for bit), pinned memory on CUDA, and a prefetcher that copies batch
                  k + 1 to the GPU on a side stream while step k runs (timm's PrefetchLoader idea;
                  a no-op on CPU)
    ShardSource   webdataset tar shards (models/data/shards.py)

Batches come out in the order of the list, so the training loop's deterministic batch order (and
resume at any step: pass the list from that step on) holds for every source.
"""
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from core.errors import DataError
from models.augment import to_float
from models.distributed import shard
from models.image_cache import decode_resized

PREFETCH_BATCHES = 2  # per worker: enough to hide a decode stall behind the batches already made


def batch_tensor(images, rows, device):
    """uint8 rows of the memory-mapped cache -> float (B, 3, S, S) in [0, 1] on device."""
    order = np.argsort(rows)  # ascending reads from the memmap, then back to batch order
    arr = np.empty((len(rows),) + images.shape[1:], dtype=np.uint8)
    arr[order] = images[np.asarray(rows)[order]]
    return to_float(torch.from_numpy(arr).to(device, non_blocking=True))


class ImageSource:
    """What the training loop and `predict_rows` need from a source of images."""

    n = 0
    workers = 0

    def __len__(self):
        return self.n

    def epoch_batches(self, rows, batch_size, env, seed, steps):
        """This process's batches of one epoch, in step order: the global batches of a seeded
        permutation of `rows`, each split across processes by rank."""
        order = np.random.default_rng(seed).permutation(rows)
        gb = batch_size * env.world_size
        return [order[s * gb:(s + 1) * gb][env.rank * batch_size:(env.rank + 1) * batch_size] for s in range(steps)]

    def local_positions(self, rows, env):
        """Positions in `rows` this process predicts (all of them without `env`)."""
        positions = np.arange(len(rows))
        return shard(positions, env) if env is not None else positions

    def arrange(self, batches):
        """Prediction batches in the order this source reads best (outputs are placed by row)."""
        return batches

    def iterate(self, batches, device):
        raise NotImplementedError

    def close(self):
        """Stop any worker processes (they restart on the next `iterate`)."""


class CacheSource(ImageSource):
    def __init__(self, images):
        self.images, self.n = images, len(images)

    def iterate(self, batches, device):
        return (batch_tensor(self.images, rows, device) for rows in batches)


class DecodeFailure:
    """An unreadable image in a worker, carried to the main process as data.

    Raised in a worker, a DataError would reach the main process as a RuntimeError holding only
    text; as a value it is raised there as the DataError itself (file + imgId + reason)."""

    def __init__(self, path, problem):
        self.path, self.problem = str(path), problem

    def check(self):
        raise DataError(self.path, self.problem)


def decode_or_failure(src, size, interpolation, img_id, path, member=None):
    try:
        return decode_resized(src, size, interpolation)
    except DataError as e:
        where = f"member {member} (imgId {img_id})" if member else f"imgId {img_id}"
        return DecodeFailure(path, f"{where}: {e.problem}")


def collate_uint8(items):
    """Decoded (S, S, 3) uint8 arrays -> one (B, S, S, 3) tensor; the first failure instead, if any."""
    for item in items:
        if isinstance(item, DecodeFailure):
            return item
    return torch.from_numpy(np.stack(items))


def to_device_batches(uint8_batches, device):
    """(B, S, S, 3) uint8 CPU batches -> float (B, 3, S, S) in [0, 1] on `device`.

    On CUDA the next batch's (pinned, uint8: 4x fewer bytes than float) copy and conversion run on a
    side stream while the caller's step for the current batch runs on the default stream."""
    if device.type != "cuda":
        for b in uint8_batches:
            if isinstance(b, DecodeFailure):
                b.check()
            yield to_float(b.to(device))
        return
    side = torch.cuda.Stream(device=device)
    ready = None
    for b in uint8_batches:
        if isinstance(b, DecodeFailure):
            b.check()
        with torch.cuda.stream(side):
            x = to_float(b.to(device, non_blocking=True))
        if ready is not None:
            yield ready
        main = torch.cuda.current_stream(device)
        main.wait_stream(side)
        x.record_stream(main)  # allocated on the side stream, used on the main one
        ready = x
    if ready is not None:
        yield ready


class _DecodeDataset(Dataset):
    def __init__(self, paths, ids, size, interpolation):
        # numpy string arrays, not lists: forked workers share their pages (no refcount copy-on-write)
        self.paths, self.ids = np.array(paths, dtype=str), np.array(ids, dtype=str)
        self.size, self.interpolation = size, interpolation

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        path = str(self.paths[i])
        return decode_or_failure(path, self.size, self.interpolation, str(self.ids[i]), path)


class _BatchList(Sampler):
    """A batch sampler whose batches are set before each pass (persistent workers keep running)."""

    def __init__(self):
        self.batches = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


class StreamSource(ImageSource):
    """Decode + resize in `workers` DataLoader processes (0: in this process)."""

    def __init__(self, paths, ids, size, interpolation="bicubic", workers=0):
        self.dataset = _DecodeDataset(paths, ids, size, interpolation)
        self.n, self.workers = len(self.dataset), int(workers)
        self._sampler, self._loader, self._pin = _BatchList(), None, None

    def _loader_for(self, device):
        pin = device.type == "cuda"
        if self._loader is None or self._pin != pin:
            self._loader, self._pin = DataLoader(
                self.dataset, batch_sampler=self._sampler, num_workers=self.workers, collate_fn=collate_uint8,
                pin_memory=pin, persistent_workers=self.workers > 0,
                prefetch_factor=PREFETCH_BATCHES if self.workers else None), pin
        return self._loader

    def iterate(self, batches, device):
        device = torch.device(device)
        self._sampler.batches = [[int(i) for i in b] for b in batches]
        return to_device_batches(iter(self._loader_for(device)), device)

    def close(self):
        self._loader = None  # the loader's iterator shuts its workers down when collected


def as_source(images):
    """A source, or a uint8 array (the memory-mapped cache) wrapped as one."""
    return images if isinstance(images, ImageSource) else CacheSource(images)
