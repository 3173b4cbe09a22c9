"""The streaming source's images/s on synthetic PNGs, as a run with `data.source: stream` reads them."""
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bench.train_step import sync
from models.data import open_source
from models.distributed import DistEnv

NOISE_LEVELS = 5  # +- grey levels of noise: ~1.6 bytes / pixel, as the Kaggle sample's SD2 PNGs (1.4-1.9)


def synthetic_png(path, px, seed):
    """A smooth random picture (bicubic-upsampled 8 x 8 colours) with mild noise, saved as PNG."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).resize((px, px), Image.BICUBIC)
    noise = rng.integers(-NOISE_LEVELS, NOISE_LEVELS + 1, size=(px, px, 3))
    Image.fromarray(np.clip(np.asarray(base, dtype=np.int16) + noise, 0, 255).astype(np.uint8)).save(path)


def write_pngs(folder, n, px):
    """`n` PNGs of `px` x `px` in `folder` (Pillow encodes without the GIL: one thread per core);
    returns the frame (imgId, path) a source reads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"img{i:05d}.png" for i in range(n)]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(synthetic_png, paths, [px] * n, range(n)))
    return pd.DataFrame({"imgId": [p.stem for p in paths], "path": [str(p) for p in paths]})


def stream_rate(cfg, frame, device, passes=3):
    """images/s of the streaming source at the config's image size, batch size and data.workers.

    One untimed round of a batch per worker starts the (persistent) workers; the timed part is
    `passes` batches per worker, all the way to float batches on `device` (pinned memory and the
    side-stream copy on CUDA). Batches take the PNGs in turn."""
    source = open_source("stream", frame, cfg, DistEnv(device=device), progress=False)
    batch, workers = cfg["train"]["batch_size"], max(1, source.workers)

    def batches(first, k):
        return [(np.arange(batch) + (first + i) * batch) % len(frame) for i in range(k)]

    for _ in source.iterate(batches(0, workers), device):
        pass
    sync(device)
    t, n = time.perf_counter(), 0
    for x in source.iterate(batches(workers, passes * workers), device):
        n += len(x)
    sync(device)
    seconds = time.perf_counter() - t
    source.close()  # the workers stop as the loader goes
    return {"stream_images_per_sec": n / seconds, "stream_workers": source.workers, "stream_batches": passes * workers,
            "stream_batch_shape": list(x.shape)}
