"""Shared pieces of the training and prediction loops: seeds, precision, batches, prediction, optimizer, schedule.

The training loop itself is models/loop.py."""
import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from core.metric import l2_normalize
from models.augment import normalize
from models.config import tta_views
from models.data.sources import as_source, batch_tensor  # noqa: F401  (batch_tensor: bench/bench_trainer.py)
from models.distributed import DistEnv, gather_rows
from models.net import build_model

CROP_TTA_BORDER = 0.05  # "crops": cut 5% off each side, resize back
RESIZE_TTA = 0.875  # "resize": down to 0.875 of the size, back up (6th place's resize TTA)


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


def embedding_forward(model):
    """images -> embedding-space predictions (float32)."""
    return lambda x: model.to_embedding(model(x)).float()


def feature_forward(model):
    """images -> backbone features (float32), for the kNN model."""
    backbone = getattr(model, "backbone", model)
    return lambda x: backbone(x).float()


def second_normalisation(pre):
    """The other of the two usual mean/std pairs: CLIP's for an ImageNet-normalised model, else ImageNet's."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    if np.allclose(pre["mean"], IMAGENET_DEFAULT_MEAN, atol=1e-3):
        return OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    return IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


def tta_inputs(x, views, pre):
    """The model inputs (normalised) of each TTA view of a float batch in [0, 1]."""
    size = x.shape[-1]
    for view in views:
        mean, std, y = pre["mean"], pre["std"], x
        if view == "flip":
            y = torch.flip(x, dims=[3])
        elif view == "crops":
            c = max(1, int(round(size * CROP_TTA_BORDER)))
            y = F.interpolate(x[:, :, c:size - c, c:size - c], size=(size, size), mode="bilinear", align_corners=False)
        elif view == "resize":
            small = max(1, int(round(size * RESIZE_TTA)))
            y = F.interpolate(x, size=(small, small), mode="bilinear", antialias=True, align_corners=False)
            y = F.interpolate(y, size=(size, size), mode="bilinear", align_corners=False)
        elif view == "norm2":
            mean, std = second_normalisation(pre)
        elif view != "none":
            raise ValueError(f"unknown TTA view {view!r}")
        yield normalize(y, mean, std)


@torch.no_grad()
def predict_rows(model, images, rows, pre, batch_size, device, precision="auto", tta="none", env=None, progress=False,
                 desc="predict", forward=None):
    """Predictions (float32) for `rows` of `images` (a source, or the memory-mapped cache); with env,
    each process does a share and all get the whole.

    `forward` maps normalised images to outputs (default: the model's embeddings). With TTA, the
    views' L2-normalised outputs are averaged.
    """
    return predict_many([(model, pre, forward)], images, rows, batch_size, device, precision, tta, env, progress,
                        desc)[0]


@torch.no_grad()
def predict_many(models, images, rows, batch_size, device, precision="auto", tta="none", env=None, progress=False,
                 desc="predict"):
    """`predict_rows` for several (model, pre, forward) at once: each batch is decoded once for all of them."""
    source, rows, views = as_source(images), np.asarray(rows), tta_views(tta)
    models = [(m.eval(), pre, fwd or embedding_forward(m)) for m, pre, fwd in models]
    local = source.local_positions(rows, env)
    batches = source.arrange([local[s:s + batch_size] for s in range(0, len(local), batch_size)])
    ctx, _ = autocast_for(precision, device)
    parts = [[] for _ in models]
    bar = tqdm(total=len(batches), desc=desc, disable=not progress, unit="batch", leave=False)
    for x in source.iterate([rows[p] for p in batches], device):
        for part, (_, pre, forward) in zip(parts, models):
            outs = []
            for inp in tta_inputs(x, views, pre):
                with ctx:
                    outs.append(forward(inp).float())
            if len(outs) > 1:
                outs = [o / o.norm(dim=1, keepdim=True).clamp_min(1e-12) for o in outs]
            part.append((sum(outs) / len(outs)).cpu().numpy())
        bar.update()
    bar.close()
    positions = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    return [gather_rows(positions, np.concatenate(p) if p else np.zeros((0, 0), dtype=np.float32), len(rows),
                        env or DistEnv()) for p in parts]


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
