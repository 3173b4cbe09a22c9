"""Image loader throughput: decode workers vs a bare decode loop, shards vs loose files, data path vs model step.

    python -m bench.bench_loader [--n 192] [--size 224] [--workers 2] [--batch 32] [--shard-size 32]
                                 [--config configs/convnext_demo.yaml]

Makes `--n` distinct 512-px PNGs from the Kaggle sample (the 8 flips / rotations of each of its
512-px SD2 images) in a temporary folder, then measures images/s of
  bare     models.image_cache.decode_resized (the trainer's decode + resize) in one process, in a loop
  parallel `workers` bare loops in separate processes, each on its share of the images: what this
           machine's cores give to that many independent decoders (the ceiling for any loader)
  stream   the streaming source (DataLoader workers, persistent): images/s timed after a warm-up
           pass (workers already started); CPU per image from passes that start and join them
  shards   the same PNG bytes in tar shards (core.shards), read by the shard source's workers
  cache    rows of the uint8 memory-mapped cache, for reference (decoded once, beforehand)
and stream / (workers x bare) (target >= 0.85), stream / parallel (the loader's own overhead, apart
from how the machine's cores scale), plus CPU ms per image (workers included), which
shows the workers' overhead even when other jobs share the cores. Then the model step alone (forward, backward, AdamW
on tensors in memory) vs the same steps fed by the stream source through the batched augmentation.
Each figure is the better of two passes (the machine is shared); both passes are printed.
"""
import argparse
import gc
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.shards import load_shard_dataset, write_shards
from models.augment import augment_batch, normalize
from models.config import load_config
from models.data import CacheSource, StreamSource
from models.data.shards import ShardSource
from models.distributed import DistEnv
from models.engine import make_optimizer
from models.image_cache import build_image_cache, decode_resized
from models.net import build_model, training_loss

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "kaggle_sample" / "images"
TRANSPOSES = [None, Image.FLIP_LEFT_RIGHT, Image.FLIP_TOP_BOTTOM, Image.ROTATE_90, Image.ROTATE_180,
              Image.ROTATE_270, Image.TRANSPOSE, Image.TRANSVERSE]


def make_images(folder, n, sample=SAMPLE):
    """`n` distinct 512-px PNGs (a competition-layout folder) from the sample images."""
    sources = sorted(Path(sample).glob("*.png"))
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        im = Image.open(sources[i % len(sources)]).convert("RGB").resize((512, 512), Image.BICUBIC)
        t = TRANSPOSES[(i // len(sources)) % len(TRANSPOSES)]
        (im.transpose(t) if t is not None else im).save(folder / "images" / f"img{i:05d}.png")
        rows.append(f"img{i:05d},sample {i}")
    (folder / "prompts.csv").write_text("imgId,prompt\n" + "\n".join(rows) + "\n")
    return sorted((folder / "images").glob("*.png"))


def cpu_seconds():
    """user + system CPU seconds of this process and of its finished (joined) children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def rate(fn, n_images, passes=2):
    """(best images/s, all passes, CPU ms per image of the best pass) of `fn()` that handles `n_images`.

    CPU time counts worker processes once they are joined: sources are closed inside `fn`."""
    rates, cpu = [], []
    for _ in range(passes):
        t, c = time.perf_counter(), cpu_seconds()
        fn()
        rates.append(n_images / (time.perf_counter() - t))
        cpu.append(1000 * (cpu_seconds() - c) / n_images)
    return max(rates), rates, cpu[int(np.argmax(rates))]


def _bare_share(args):
    paths, size = args
    for p in paths:
        decode_resized(p, size)


def parallel_rate(paths, size, workers):
    """`rate` of `workers` bare decode loops in separate processes (started before the clock)."""
    shares = [(paths[i::workers], size) for i in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(abs, range(workers))  # the processes exist before timing starts
        rates = []
        for _ in range(2):
            t = time.perf_counter()
            pool.map(_bare_share, shares, chunksize=1)
            rates.append(len(paths) / (time.perf_counter() - t))
    return max(rates), rates


def drain(source, batches, close=False):
    for _ in source.iterate(batches, "cpu"):
        pass
    if close:
        source.close()
        gc.collect()  # the loader's iterator joins its workers when collected


def model_rates(cfg, source, batches, size, batch):
    """images/s of the bare step on ready tensors, and of the step fed by `source` + augmentation."""
    torch.manual_seed(0)
    model, pre = build_model(cfg, np.zeros(384), np.ones(384))
    model.train()
    opt = make_optimizer(model, cfg["train"])
    y = torch.nn.functional.normalize(torch.randn(batch, 384), dim=1)
    gen = torch.Generator().manual_seed(0)

    def step(x):
        loss = training_loss(model, model(x), y[:len(x)], cfg["loss"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    ready = torch.rand(batch, 3, size, size)
    step(ready)  # warm-up
    bare = rate(lambda: [step(ready) for _ in batches], len(batches) * batch)
    fed = rate(lambda: [step(normalize(augment_batch(x, cfg["augment"], gen), pre["mean"], pre["std"]))
                        for x in source.iterate(batches, "cpu")], len(batches) * batch)
    aug_s = []
    for x in source.iterate(batches[:4], "cpu"):
        t = time.perf_counter()
        normalize(augment_batch(x, cfg["augment"], gen), pre["mean"], pre["std"])
        aug_s.append(time.perf_counter() - t)
    return bare, fed, float(np.median(aug_s))


def fmt(r):
    return f"{r[0]:7.1f} img/s  (passes {', '.join(f'{v:.1f}' for v in r[1])}; {r[2]:.1f} CPU ms/img)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=192, help="images (512-px PNGs made from the Kaggle sample)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=32, help="samples per shard (and the shuffle buffer)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the model step")
    ap.add_argument("--config", default="configs/convnext_demo.yaml", help="model of the step comparison")
    ap.add_argument("--model-steps", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = make_images(tmp / "data", args.n)
        ids = [p.stem for p in paths]
        rows = np.arange(len(paths))
        batches = [rows[i:i + args.batch] for i in range(0, len(rows), args.batch)]
        print(f"{args.n} PNGs 512 px -> {args.size} px, {args.workers} workers, batch {args.batch}, "
              f"{sum(p.stat().st_size for p in paths) / 2**20:.0f} MiB")
        bare = rate(lambda: [decode_resized(p, args.size) for p in paths], len(paths))
        parallel = parallel_rate([str(p) for p in paths], args.size, args.workers)
        stream = StreamSource([str(p) for p in paths], ids, args.size, workers=args.workers)
        cold = rate(lambda: drain(stream, batches, close=True), len(paths))  # worker start-up included
        drain(stream, batches)  # warm-up: the persistent workers are running from here on
        warm = rate(lambda: drain(stream, batches), len(paths))
        streamed = (warm[0], warm[1], cold[2])  # images/s of running workers; CPU/img with start-up (joined)
        write_shards(tmp / "data", tmp / "shards", args.shard_size, progress=False, workers=1)
        shards = ShardSource(load_shard_dataset(tmp / "shards"), args.size, workers=args.workers,
                             shuffle_buffer=args.shard_size)
        plan = shards.epoch_batches(rows, args.batch, DistEnv(), seed=0, steps=len(batches))
        sharded = rate(lambda: drain(shards, plan), len(plan) * args.batch)
        cache = CacheSource(build_image_cache(paths, args.size, tmp / "cache", progress=False, workers=1))
        cached = rate(lambda: drain(cache, batches), len(paths))
        print(f"bare decode loop, 1 process    {fmt(bare)}")
        print(f"{args.workers} bare loops, {args.workers} processes    {parallel[0]:7.1f} img/s  (passes "
              f"{', '.join(f'{v:.1f}' for v in parallel[1])}) = {parallel[0] / bare[0]:.2f} x bare: "
              f"this machine's ceiling for {args.workers} decoders")
        print(f"stream, {args.workers} workers             {fmt(streamed)}  (started: "
              f"{', '.join(f'{v:.1f}' for v in cold[1])} img/s)")
        print(f"  stream / ({args.workers} x bare) = {streamed[0] / (args.workers * bare[0]):.3f}  (target >= 0.85);"
              f" stream / parallel bare loops = {streamed[0] / parallel[0]:.3f};"
              f" CPU per image bare / stream = {bare[2] / streamed[2]:.3f}")
        print(f"shards, {args.workers} workers             {fmt(sharded)}")
        print(f"  shards / stream (loose files) = {sharded[0] / streamed[0]:.3f}")
        print(f"cache (memmap rows)            {fmt(cached)}")
        if args.model_steps <= 0:  # loader figures only
            stream.close()
            return
        cfg = load_config(REPO / args.config, [f"image.size={args.size}"])
        steps = batches[:args.model_steps]
        bare_step, fed, aug_s = model_rates(cfg, stream, steps, args.size, args.batch)
        step_s = args.batch / bare_step[0]
        data_s = args.batch / streamed[0]
        print(f"{cfg['name']} step, tensors ready  {fmt(bare_step)}   ({step_s * 1000:.0f} ms / batch)")
        print(f"{cfg['name']} step fed by stream   {fmt(fed)}   ratio {fed[0] / bare_step[0]:.3f}")
        print(f"data path per batch: decode {data_s * 1000:.0f} ms (stream, {args.workers} workers) + augmentation "
              f"{aug_s * 1000:.0f} ms (main process) vs model step {step_s * 1000:.0f} ms")
        stream.close()


if __name__ == "__main__":
    main()
