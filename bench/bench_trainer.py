"""Trainer throughput vs a bare training loop, per demo model, measured in one process.

    python -m bench.bench_trainer [--steps 20] [--batch 64] [--size 64] [--threads 2]

bare:    the same model, batch size and AdamW step on random tensors already in memory
trainer: models.loop.train_fold reading a uint8 memory-mapped image cache, with batched
         augmentation, normalisation, LR schedule and loss (the OOF evaluation is switched off)
Prints images/s of each and the ratio trainer / bare (target >= 0.9). A and B alternate
twice and the better of each is kept, since this machine is noisy. Whole-loop ratios still
swing by +-10% here, so it also times the trainer's data path alone (cache read, batched
augmentation, normalisation; many repetitions, median) and prints the ratio it implies:
model step / (model step + data path).
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models.config import load_config
from models.distributed import DistEnv
from models.augment import augment_batch, normalize
from models.engine import batch_tensor, make_optimizer
from models.loop import train_fold
from models.net import build_model, training_loss

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIGS = ["configs/convnext_demo.yaml", "configs/eva_demo.yaml", "configs/vit_demo.yaml"]


def bare_loop(cfg, steps, batch, size):
    torch.manual_seed(0)
    model, _ = build_model(cfg, np.zeros(384), np.ones(384))
    model.train()
    opt = make_optimizer(model, cfg["train"])
    x = torch.randn(batch, 3, size, size)
    y = torch.nn.functional.normalize(torch.randn(batch, 384), dim=1)
    t0 = time.perf_counter()  # timed from the first step, as the trainer times its epoch
    for _ in range(steps):
        loss = training_loss(model, model(x), y, cfg["loss"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def trainer_loop(cfg, steps, batch, size, tmp):
    n = batch * steps
    rng = np.random.default_rng(0)
    images = np.lib.format.open_memmap(Path(tmp) / "cache.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    images[:] = rng.integers(0, 256, size=images.shape, dtype=np.uint8)
    images.flush()
    images = np.load(Path(tmp) / "cache.npy", mmap_mode="r")
    targets = rng.normal(size=(n, 384)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    _, _, _, stats = train_fold(cfg, 0, images, targets, np.arange(n), np.arange(0), Path(tmp) / "fold", DistEnv(),
                                progress=False)
    return stats["train_images_per_sec"]


def data_path_seconds(cfg, batch, size, tmp, reps=40):
    """Median seconds per batch of what the trainer adds to a bare step: memmap read + augment + normalize."""
    n = batch * 8
    images = np.lib.format.open_memmap(Path(tmp) / "data_path.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    images[:] = np.random.default_rng(1).integers(0, 256, size=images.shape, dtype=np.uint8)
    images.flush()
    images = np.load(Path(tmp) / "data_path.npy", mmap_mode="r")
    _, pre = build_model(cfg, np.zeros(384), np.ones(384))
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(reps):
        rows = rng.choice(n, size=batch, replace=False)
        t = time.perf_counter()
        normalize(augment_batch(batch_tensor(images, rows, "cpu"), cfg["augment"], gen), pre["mean"], pre["std"])
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", nargs="+", default=DEMO_CONFIGS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{args.steps} steps of batch {args.batch} at {args.size} px, {args.threads} threads")
    for path in args.configs:
        cfg = load_config(REPO / path, [f"train.batch_size={args.batch}", "train.epochs=1", "train.eval_every=0",
                                        f"train.max_steps_per_epoch={args.steps}", f"image.size={args.size}"])
        bare, trainer = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(2):
                bare.append(bare_loop(cfg, args.steps, args.batch, args.size))
                trainer.append(trainer_loop(cfg, args.steps, args.batch, args.size, tmp))
            data_s = data_path_seconds(cfg, args.batch, args.size, tmp)
        b, t = max(bare), max(trainer)
        step_s = args.batch / b
        print(f"{cfg['name']:<16} bare {b:7.1f} img/s   trainer {t:7.1f} img/s   ratio {t / b:.3f}  (target >= 0.9)"
              f"   | data path {1000 * data_s:.1f} ms vs step {1000 * step_s:.0f} ms per batch:"
              f" implied ratio {step_s / (step_s + data_s):.3f}")


if __name__ == "__main__":
    main()
