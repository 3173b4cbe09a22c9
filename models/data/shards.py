"""Training images from webdataset tar shards (written by `python -m core.shards`).

The shard set's prompts.csv gives every sample's row, shard and position, so an epoch is planned
up front on row numbers (models/data/sampling.py: shard order, buffer shuffle, per process and
per worker split) and the readers only fetch what the plan names: a worker opens the shards its
batches need, reads each sequentially (webdataset's tar iterator; members it does not need are
passed over, not kept), holds the few samples that arrive before their batch, and decodes a batch
when it is complete. Resuming at step s reads no shard whose samples all fall before s; a shard
holding samples of both reads its skipped part again (bytes only, no decoding): about one shard
per block at the cut (two where the shuffle buffer held a sample back across a shard boundary).
"""
import io
import tarfile

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from core.errors import DataError
from core.shards import FORMATS
from models.data.sampling import interleave_blocks, shard_epoch_plan
from models.data.sources import PREFETCH_BATCHES, DecodeFailure, ImageSource, decode_or_failure, to_device_batches

IMAGE_EXTS = set(FORMATS) | {"jpeg"}


def _shard_members(path, keys):
    """(key, member name, bytes) of the image members of `path` whose key is in `keys`, in tar order."""
    from webdataset.tariterators import base_plus_ext, tar_file_iterator

    def wanted(fname):
        key, ext = base_plus_ext(fname)
        return key in keys and ext is not None and ext.lower() in IMAGE_EXTS

    with open(path, "rb") as f:
        for entry in tar_file_iterator(f, select_files=wanted):
            yield base_plus_ext(entry["fname"])[0], entry["fname"], entry["data"]


def read_batches(shard_paths, items, size, interpolation):
    """Yield a uint8 (B, S, S, 3) batch (or a DecodeFailure) per item (ids, shard indices), in order."""
    needed = {}  # shard -> ids still to fetch from it
    for ids, shards in items:
        for i, s in zip(ids, shards):
            needed.setdefault(int(s), set()).add(str(i))
    readers, early = {}, {}  # open shard iterators; samples read before their batch: id -> (name, bytes)
    for ids, shards in items:
        batch = []
        for i, s in zip(ids, shards):
            i, s = str(i), int(s)
            path = shard_paths[s]
            try:
                while i not in early:
                    if s not in readers:
                        readers[s] = _shard_members(path, needed[s])
                    key, name, data = next(readers[s], (None, None, None))
                    if key is None:
                        raise DataError(path, f"imgId {i} is listed for this shard in prompts.csv but not in it")
                    early[key] = (name, data)
            except (tarfile.TarError, OSError) as e:
                yield DecodeFailure(path, f"unreadable tar while looking for imgId {i} ({type(e).__name__}: {e})")
                return
            except DataError as e:
                yield DecodeFailure(e.path, e.problem)
                return
            name, data = early.pop(i)
            needed[s].discard(i)
            if not needed[s]:
                readers.pop(s, None)  # closes the file
            arr = decode_or_failure(io.BytesIO(data), size, interpolation, i, path, member=name)
            if isinstance(arr, DecodeFailure):
                yield arr
                return
            batch.append(arr)
        yield torch.from_numpy(np.stack(batch))


class _ShardReader(IterableDataset):
    """Worker w of n reads items w, w + n, ...: DataLoader serves workers round-robin, so the
    batches come out in the items' order."""

    def __init__(self, shard_paths, items, size, interpolation):
        self.shard_paths, self.items = shard_paths, items
        self.size, self.interpolation = size, interpolation

    def __iter__(self):
        info = get_worker_info()
        w, n = (info.id, info.num_workers) if info is not None else (0, 1)
        return read_batches(self.shard_paths, self.items[w::n], self.size, self.interpolation)


class ShardSource(ImageSource):
    """Rows are the shard set's samples in prompts.csv order (`core.shards.load_shard_dataset`)."""

    def __init__(self, frame, size, interpolation="bicubic", workers=0, shuffle_buffer=1000):
        self.ids = frame["imgId"].to_numpy(dtype=str)
        self.shard = frame["shard"].to_numpy(dtype=np.int64)
        self.pos = frame["pos"].to_numpy(dtype=np.int64)
        paths = frame.drop_duplicates("shard").sort_values("shard")
        self.shard_paths = paths["path"].tolist()
        self.n, self.workers, self.shuffle_buffer = len(frame), int(workers), int(shuffle_buffer)
        self.size, self.interpolation = size, interpolation

    def epoch_batches(self, rows, batch_size, env, seed, steps):
        plan = shard_epoch_plan(rows, self.shard, self.pos, len(self.shard_paths), batch_size, env.rank,
                                env.world_size, seed, self.shuffle_buffer)
        return plan[:steps]

    def local_positions(self, rows, env):
        """A contiguous run of the rows in shard order per process, so each reads its own shards."""
        rows = np.asarray(rows)
        positions = np.lexsort((self.pos[rows], self.shard[rows]))
        if env is None:
            return positions
        return np.array_split(positions, env.world_size)[env.rank]

    def arrange(self, batches):
        return [batches[i] for i in interleave_blocks(len(batches), max(1, self.workers))]

    def iterate(self, batches, device):
        device = torch.device(device)
        items = [(self.ids[b].tolist(), self.shard[b].tolist()) for b in batches]
        workers = min(self.workers, len(items))
        loader = DataLoader(_ShardReader(self.shard_paths, items, self.size, self.interpolation), batch_size=None,
                            num_workers=workers, pin_memory=device.type == "cuda",
                            prefetch_factor=PREFETCH_BATCHES if workers else None)
        return to_device_batches(iter(loader), device)
