"""Trainer throughput vs a bare training loop, per demo model, measured in one process.

    python -m bench.bench_trainer [--steps 20] [--batch 64] [--size 64] [--threads 2]

bare:    the same model, batch size and AdamW step on a random batch already in memory
trainer: models.loop.train_one_epoch reading a uint8 memory-mapped image cache, with batched
         augmentation, normalisation, LR schedule and loss (bench/train_step.py says what each runs)
Prints images/s of each and the ratio trainer / bare (target >= 0.9). A and B alternate
twice and the better of each is kept, since this machine is noisy. Whole-loop ratios still
swing by +-10% here, so it also times the trainer's data path alone (cache read, batched
augmentation, normalisation; many repetitions, median) and prints the ratio it implies:
model step / (model step + data path). bench.gpu_check runs the same comparison on a GPU.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.train_step import bare_seconds, fold_model, synthetic_cache, trainer_seconds, unit_targets
from models.augment import augment_batch, normalize
from models.config import load_config
from models.engine import batch_tensor

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIGS = ["configs/convnext_demo.yaml", "configs/eva_demo.yaml", "configs/vit_demo.yaml"]
CACHE_BATCHES = 4  # distinct batches in the synthetic cache; the trainer takes its rows in turn


def data_path_seconds(cfg, pre, batch, size, tmp, reps=40):
    """Median seconds per batch of what the trainer adds to a bare step: memmap read + augment + normalize."""
    n = batch * 8
    images = synthetic_cache(Path(tmp) / "data_path.npy", n, size, seed=1)
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
        cfg = load_config(REPO / path, [f"train.batch_size={args.batch}", "train.epochs=1", f"image.size={args.size}"])
        bare, trainer = [], []
        with tempfile.TemporaryDirectory() as tmp:
            images = synthetic_cache(Path(tmp) / "cache.npy", args.batch * CACHE_BATCHES, args.size)
            targets = unit_targets(len(images))
            fm = fold_model(cfg, targets, args.steps, "cpu")
            for _ in range(2):
                bare.append(args.steps * args.batch / bare_seconds(fm, cfg, args.steps, "cpu"))
                seconds, _ = trainer_seconds(fm, cfg, images, targets, args.steps, "cpu")
                trainer.append(args.steps * args.batch / seconds)
            data_s = data_path_seconds(cfg, fm.pre, args.batch, args.size, tmp)
        b, t = max(bare), max(trainer)
        step_s = args.batch / b
        print(f"{cfg['name']:<16} bare {b:7.1f} img/s   trainer {t:7.1f} img/s   ratio {t / b:.3f}  (target >= 0.9)"
              f"   | data path {1000 * data_s:.1f} ms vs step {1000 * step_s:.0f} ms per batch:"
              f" implied ratio {step_s / (step_s + data_s):.3f}")


if __name__ == "__main__":
    main()
