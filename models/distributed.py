"""Multi-process training through torch.distributed, as launched by `torchrun` or `accelerate launch`.

Both launchers set RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; we only read them. NCCL on
GPUs, gloo on CPU. Nothing here schedules processes itself.
"""
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def enabled(self):
        return self.world_size > 1


def init_distributed():
    """Join the process group when launched by torchrun / accelerate; otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank, world, local, device)


def barrier(env):
    if env.enabled:
        dist.barrier()


def shard(indices, env):
    """This process's share of `indices` (strided, so shares differ by at most one row)."""
    return indices[env.rank::env.world_size]


def gather_rows(local_rows, local_values, n_total, env):
    """Collect (row index, value) pairs from all processes into one (n_total, ...) array on every rank.

    Raises unless every row 0..n_total-1 arrives exactly once.
    """
    if env.enabled:
        parts = [None] * env.world_size
        dist.all_gather_object(parts, (np.asarray(local_rows), np.asarray(local_values)))
        parts = [p for p in parts if len(p[0])] or parts[:1]  # a process may have had no rows
        rows = np.concatenate([p[0] for p in parts])
        values = np.concatenate([p[1] for p in parts])
    else:
        rows, values = np.asarray(local_rows), np.asarray(local_values)
    counts = np.bincount(rows, minlength=n_total)
    if len(counts) != n_total or not (counts == 1).all():
        raise RuntimeError(f"gathered predictions cover {np.count_nonzero(counts)} of {n_total} rows "
                           f"({int((counts > 1).sum())} more than once)")
    out = np.empty((n_total,) + values.shape[1:], dtype=values.dtype)
    out[rows] = values
    return out


def broadcast_object(obj, env):
    if not env.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup(env):
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()
