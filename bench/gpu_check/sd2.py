"""Stable Diffusion 2 images/s through datagen.generate's own loading and rendering."""
import time
from pathlib import Path

import numpy as np

from bench.train_step import sync
from core.errors import DataError

PROMPTS = ["a photograph of a lighthouse on a cliff at sunset, dramatic clouds",
           "an oil painting of a fox in a snowy forest, detailed, warm light",
           "a futuristic city street at night, neon signs, rain, cinematic",
           "a bowl of fruit on a wooden table, still life, soft shadows"]


def check_pipeline_folder(path):
    """Fail at the start, not after the models: --sd2 must be a local diffusers pipeline folder."""
    if not (Path(path) / "model_index.json").is_file():
        raise DataError(path, "--sd2 needs a local diffusers Stable Diffusion 2 pipeline folder (with "
                              "model_index.json, as written by save_pretrained); nothing is downloaded")


def sd2_rate(path, device, size, steps, batch, repeats=2):
    """images/s of `repeats` batches of `batch` prompts at `size` px and `steps` denoising steps
    (the generator's default scheduler and dtype: fp16 on a GPU), after one untimed batch."""
    from datagen.generate.render import load_pipeline, render_batch, resolve_dtype

    dtype = resolve_dtype("auto", device)
    t = time.perf_counter()
    pipe = load_pipeline(str(path), device, dtype)
    load_s = time.perf_counter() - t
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    render_batch(pipe, prompts, range(batch), size, steps)
    sync(device)
    t = time.perf_counter()
    for r in range(repeats):
        out = render_batch(pipe, prompts, range((r + 1) * batch, (r + 2) * batch), size, steps)
    sync(device)
    seconds = time.perf_counter() - t
    del pipe
    return {"path": str(path), "images_per_sec": repeats * batch / seconds, "image_size": size, "steps": steps,
            "batch": batch, "dtype": str(dtype).removeprefix("torch."), "load_seconds": load_s,
            "finite": bool(np.isfinite(out).all()), "image_shape": list(out.shape)}
