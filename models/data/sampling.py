"""Which rows an epoch trains on, and in what order a shard set is read.

`PromptSampler` (data.sample_per_prompt: 1): several images per prompt, one of them per epoch.
The prompt's identity is its text; among its images the one with the smallest hash of
(epoch seed, imgId) is drawn, so the draw for a prompt depends only on the seed, the epoch and
that prompt's own images (resume is exact; adding other prompts changes nothing for it).

`shard_epoch_plan`: a shard set's epoch as this process's batches in step order. The shard order
is a seeded permutation per epoch, samples keep their order inside a shard, and webdataset's
shuffle buffer is simulated on the row numbers (a buffer of `bufsize`: emit a random element,
refill). The stream is cut into equal contiguous parts per process, so every process gets
len // (world x batch) steps and fewer than world x batch samples are dropped, each sample at
most once. Each part is cut into SHARD_STREAMS blocks read side by side, step t taking the next
batch of block t mod SHARD_STREAMS: DataLoader workers are served round-robin, so with a worker
count dividing SHARD_STREAMS each worker reads its own blocks (its own shards), and the plan does
not depend on the number of workers.
"""
import hashlib

import numpy as np

SHARD_STREAMS = 48  # divisible by 1, 2, 3, 4, 6, 8, 12, 16, 24 and 48 workers


def hash64(strings):
    """A stable 64-bit hash per string (blake2b), as uint64."""
    return np.array([int.from_bytes(hashlib.blake2b(str(s).encode("utf-8"), digest_size=8).digest(), "little")
                     for s in strings], dtype=np.uint64)


def _mix64(x):
    """splitmix64's finaliser: a well-spread 64-bit value from each input (uint64 arithmetic wraps)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class PromptSampler:
    """One image per prompt per epoch, over the rows of a training set."""

    def __init__(self, prompts, ids):
        self.prompt_key = hash64(prompts)
        self.id_key = hash64(ids)

    def groups(self, rows):
        """Distinct prompts among `rows`: one epoch's length."""
        return len(np.unique(self.prompt_key[np.asarray(rows)]))

    def epoch_rows(self, rows, seed):
        """Sorted rows: for each prompt among `rows`, the image drawn for this epoch's `seed`."""
        rows = np.asarray(rows)
        if not len(rows):
            return rows
        draw = _mix64(self.id_key[rows] ^ np.uint64(seed % 2**64))
        key = self.prompt_key[rows]
        order = np.lexsort((draw, key))
        first = np.ones(len(order), dtype=bool)
        first[1:] = key[order][1:] != key[order][:-1]
        return np.sort(rows[order[first]])


def buffer_shuffle(items, bufsize, rng):
    """webdataset's `shuffle(bufsize)` on an array: fill a buffer, emit a random element, refill."""
    items = np.asarray(items)
    out = np.empty_like(items)
    draws = rng.random(len(items))
    buf, k = [], 0
    for x in items.tolist():
        buf.append(x)
        if len(buf) >= bufsize:
            i = int(draws[k] * len(buf))
            buf[i], buf[-1] = buf[-1], buf[i]
            out[k] = buf.pop()
            k += 1
    out[k:] = rng.permutation(np.asarray(buf, dtype=items.dtype)) if buf else buf
    return out


def interleave_blocks(n, k):
    """Indices 0..n-1 reordered so that position t holds the next element of contiguous block t mod k."""
    blocks = np.array_split(np.arange(n), max(1, min(k, n)))  # first blocks are the longer ones
    k = len(blocks)
    return np.array([blocks[t % k][t // k] for t in range(n)], dtype=np.int64)


def shard_epoch_plan(rows, shard, pos, n_shards, batch_size, rank, world_size, seed, bufsize):
    """This process's batches (row arrays) of one epoch of a shard set, in step order."""
    rng = np.random.default_rng(seed)
    shard_rank = rng.permutation(n_shards)  # where each shard comes in this epoch's order
    rows = np.asarray(rows)
    stream = rows[np.lexsort((pos[rows], shard_rank[shard[rows]]))]
    stream = buffer_shuffle(stream, bufsize, rng)
    steps = len(stream) // (batch_size * world_size)
    mine = stream[rank * steps * batch_size:(rank + 1) * steps * batch_size].reshape(steps, batch_size)
    return [mine[i] for i in interleave_blocks(steps, SHARD_STREAMS)]
