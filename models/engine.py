"""Shared pieces of the training and prediction loops: seeds, precision, batches, prediction, optimizer, schedule.

The training loop itself is models/loop.py."""
import contextlib

import numpy as np
import torch
from tqdm import tqdm

from core.metric import l2_normalize
from models.augment import normalize, to_float
from models.distributed import gather_rows, shard
from models.net import build_model

def derived_seed(*parts):
    """A 63-bit seed from integers: reproducible per (seed, fold, epoch, rank) without saved RNG state."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def autocast_for(precision, device):
    if precision == "auto":  # bf16 where the GPU has it (A100/H100), fp16 on older ones (T4, P100)
        precision = "fp32" if device.type != "cuda" else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    if precision == "fp32":
        return contextlib.nullcontext(), precision
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype), precision


def batch_tensor(images, rows, device):
    """uint8 rows of the memory-mapped cache -> float (B, 3, S, S) in [0, 1] on device."""
    order = np.argsort(rows)  # ascending reads from the memmap, then back to batch order
    arr = np.empty((len(rows),) + images.shape[1:], dtype=np.uint8)
    arr[order] = images[np.asarray(rows)[order]]
    return to_float(torch.from_numpy(arr).to(device, non_blocking=True))


def embedding_forward(model):
    """images -> embedding-space predictions (float32)."""
    return lambda x: model.to_embedding(model(x)).float()


def feature_forward(model):
    """images -> backbone features (float32), for the kNN model."""
    backbone = getattr(model, "backbone", model)
    return lambda x: backbone(x).float()


@torch.no_grad()
def predict_rows(model, images, rows, pre, batch_size, device, precision="auto", tta="none", env=None, progress=False,
                 desc="predict", forward=None):
    """Predictions (float32) for `rows` of `images`; with env, each process does a share and all get the whole.

    `forward` maps normalised images to outputs (default: the model's embeddings). With TTA, the
    views' L2-normalised outputs are averaged.
    """
    model.eval()
    forward = forward or embedding_forward(model)
    rows = np.asarray(rows)
    local = shard(np.arange(len(rows)), env) if env is not None else np.arange(len(rows))
    ctx, _ = autocast_for(precision, device)
    parts = []
    for s in tqdm(range(0, len(local), batch_size), desc=desc, disable=not progress, unit="batch", leave=False):
        idx = local[s:s + batch_size]
        x = batch_tensor(images, rows[idx], device)
        views = [x]
        if tta == "flip":
            views.append(torch.flip(x, dims=[3]))
        elif tta == "crops":
            size = x.shape[-1]
            c = max(1, int(round(size * 0.05)))
            crop = x[:, :, c:size - c, c:size - c]
            views.append(torch.nn.functional.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False))
        outs = []
        for v in views:
            with ctx:
                outs.append(forward(normalize(v, pre["mean"], pre["std"])).float())
        if len(outs) > 1:
            outs = [o / o.norm(dim=1, keepdim=True).clamp_min(1e-12) for o in outs]
        parts.append((sum(outs) / len(outs)).cpu().numpy())
    out = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
    if env is None:
        return out
    return gather_rows(local, out, len(rows), env)


def cosine(pred, target):
    return float(np.mean(np.sum(l2_normalize(pred) * target, axis=1)))


def make_optimizer(model, tcfg):
    """AdamW with timm's layer-wise LR decay (param groups carry lr_scale = decay ** (top - layer))."""
    import timm.optim

    return timm.optim.create_optimizer_v2(model, opt="adamw", lr=tcfg["lr"], weight_decay=tcfg["weight_decay"],
                                          layer_decay=tcfg["layer_decay"] if tcfg["layer_decay"] < 1 else None)


def make_scheduler(optimizer, tcfg, updates_per_epoch):
    """Linear warm-up then cosine decay, stepped per optimizer update (timm applies each group's lr_scale)."""
    import timm.scheduler

    total = updates_per_epoch * tcfg["epochs"]
    warmup = min(int(round(tcfg["warmup_epochs"] * updates_per_epoch)), total - 1)
    return timm.scheduler.CosineLRScheduler(
        optimizer, t_initial=max(1, total - warmup), lr_min=tcfg["min_lr"], warmup_t=warmup,
        warmup_lr_init=tcfg["lr"] * 0.01, warmup_prefix=True, t_in_epochs=False)


def build_model_for_inference(cfg, state_dict, device):
    """A fold checkpoint's model, without reaching for pretrained weights (the state dict has them all)."""
    mean = state_dict["target_mean"].cpu().numpy()
    std = state_dict["target_std"].cpu().numpy()
    model, pre = build_model(cfg, mean, std, load_weights=False)
    model.load_state_dict(state_dict)
    return model.to(device).eval(), pre
