"""The trainer's step vs a bare step on the same model (bench.bench_trainer on the CPU, bench.gpu_check on a GPU).

bare:    forward under the config's autocast, loss, backward, and every `train.grad_accum` micro-batches
         the optimizer step (through the GradScaler in fp16), on one batch already on the device
trainer: models.loop.train_one_epoch, whose updates are models.loop._optimizer_update (clip, scaler,
         schedule, EMA), reading a uint8 memory-mapped image cache through the batched augmentation
         and normalisation, in the fine-tuning phase (epoch `train.linear_probe_epochs`: the backbone
         trains); the cache's rows are taken in turn
Both step the same FoldModel, built by models.loop.build_fold_model as a fold's training builds it
(EMA, gradient checkpointing, layer decay, schedule, precision as configured). Each first runs one
optimizer update untimed (CUDA kernels picked, optimizer state allocated), then `steps` micro-batches
between two device synchronisations.
"""
import time
from types import SimpleNamespace

import numpy as np
import torch

from core import EMBEDDING_DIM
from models.checkpoint import CheckpointSchedule
from models.distributed import DistEnv
from models.loop import FoldState, build_fold_model, train_one_epoch
from models.net import training_loss


def sync(device):
    """Wait for the device's queued work, so a clock read after it counts that work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_cache(path, n, size, seed=0):
    """A read-only uint8 (n, size, size, 3) memory-mapped cache of random pixels, written to `path`."""
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    images[:] = np.random.default_rng(seed).integers(0, 256, size=images.shape, dtype=np.uint8)
    images.flush()
    del images
    return np.load(path, mmap_mode="r")


def unit_targets(n, seed=0):
    """n random unit vectors (float32), standing in for prompt embeddings."""
    y = np.random.default_rng(seed).normal(size=(n, EMBEDDING_DIM)).astype(np.float32)
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def fold_model(cfg, targets, steps, device):
    """The FoldModel a fold's training builds (fold 0, every target row a training row)."""
    updates = max(1, -(-steps // cfg["train"]["grad_accum"]))
    return build_fold_model(cfg, 0, targets, np.arange(len(targets)), updates, DistEnv(device=torch.device(device)))


def bare_seconds(fm, cfg, steps, device):
    """Seconds of `steps` bare micro-batches (after one untimed optimizer update)."""
    device = torch.device(device)
    tcfg = cfg["train"]
    size, accum = cfg["image"]["size"], tcfg["grad_accum"]
    x = torch.randn(tcfg["batch_size"], 3, size, size, device=device)
    y = torch.nn.functional.normalize(torch.randn(tcfg["batch_size"], EMBEDDING_DIM, device=device), dim=1)
    model, opt = fm.model, fm.optimizer
    model.train()
    model.freeze_backbone = False

    def run(n):
        for i in range(n):
            with fm.autocast:
                z = model(x)
            loss = training_loss(model, z, y, cfg["loss"]) / accum
            (fm.scaler.scale(loss) if fm.scaler else loss).backward()
            if (i + 1) % accum == 0 or i + 1 == n:
                if fm.scaler:
                    fm.scaler.step(opt)
                    fm.scaler.update()
                else:
                    opt.step()
                opt.zero_grad(set_to_none=True)

    run(accum)
    sync(device)
    t = time.perf_counter()
    run(steps)
    sync(device)
    return time.perf_counter() - t


def trainer_seconds(fm, cfg, images, targets, steps, device):
    """(seconds, FoldState) of `steps` micro-batches of models.loop.train_one_epoch (after one untimed update)."""
    from models.data import CacheSource

    device = torch.device(device)
    tcfg = cfg["train"]
    batch, accum = tcfg["batch_size"], tcfg["grad_accum"]
    env, source = DistEnv(device=device), CacheSource(images)
    st = FoldState(epoch=tcfg["linear_probe_epochs"])  # the probe epochs train the head alone
    no_stop, no_checkpoints = SimpleNamespace(signum=None), CheckpointSchedule(None)

    def save():  # never due: no stop request, no checkpoint schedule
        raise AssertionError("the benchmark writes no checkpoint")
    save.path = None

    def epoch(first, n):
        st.step, st.epoch_losses = 0, []
        batches = [(np.arange(batch) + (first + i) * batch) % len(images) for i in range(n)]
        train_one_epoch(fm, st, cfg, 0, source, targets, batches, env, save, no_stop, no_checkpoints, progress=False)

    epoch(0, accum)
    sync(device)
    t = time.perf_counter()
    epoch(accum, steps)
    sync(device)
    return time.perf_counter() - t, st
