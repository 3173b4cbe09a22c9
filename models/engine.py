"""Training and prediction loops for one fold (single process or DDP)."""
import contextlib
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.metric import l2_normalize
from models.augment import augment_batch, normalize, to_float
from models.distributed import barrier, gather_rows, shard
from models.net import build_model, training_loss

STD_FLOOR = 1e-4


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


def train_fold(cfg, fold, images, targets, train_rows, val_rows, fold_dir, env, resume=False, progress=True,
               log=print):
    """Train one fold; return (final model, preprocessing, log rows, stats). Checkpoints every epoch."""
    import timm.utils

    tcfg, device = cfg["train"], env.device
    fold_dir = Path(fold_dir)
    seed = cfg["seed"]
    rng_inner = np.random.default_rng(derived_seed(seed, fold, 999))
    train_rows = np.asarray(train_rows)
    inner_rows = np.array([], dtype=np.int64)
    if tcfg["inner_val_fraction"] > 0:
        perm = rng_inner.permutation(len(train_rows))
        n_inner = max(1, int(len(train_rows) * tcfg["inner_val_fraction"]))
        inner_rows, train_rows = train_rows[np.sort(perm[:n_inner])], train_rows[np.sort(perm[n_inner:])]

    # Target statistics from this fold's training rows only.
    mean = targets[train_rows].mean(axis=0)
    std = np.maximum(targets[train_rows].std(axis=0), STD_FLOOR)
    torch.manual_seed(derived_seed(seed, fold))
    model, pre = build_model(cfg, mean, std)
    model.to(device)
    optimizer = make_optimizer(model, tcfg)
    bsz, accum = tcfg["batch_size"], tcfg["grad_accum"]
    global_batch = bsz * env.world_size
    steps_per_epoch = max(1, len(train_rows) // global_batch)
    if tcfg["max_steps_per_epoch"]:
        steps_per_epoch = min(steps_per_epoch, tcfg["max_steps_per_epoch"])
    updates_per_epoch = max(1, -(-steps_per_epoch // accum))  # a last partial accumulation still steps
    scheduler = make_scheduler(optimizer, tcfg, updates_per_epoch)
    ema = timm.utils.ModelEmaV3(model, decay=tcfg["ema_decay"]) if tcfg["ema_decay"] > 0 else None
    probe_epochs = tcfg["linear_probe_epochs"]
    ddp_model = model
    if env.enabled:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=probe_epochs > 0)
    ctx, precision = autocast_for(tcfg["precision"], device)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    start_epoch, num_updates, log_rows = 0, 0, []
    best = {"score": -math.inf, "state": None, "epoch": -1, "bad_epochs": 0}
    last_path = fold_dir / "last.pt"
    if resume and last_path.is_file():
        ckpt = torch.load(last_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, num_updates, log_rows, best = ckpt["epoch"], ckpt["num_updates"], ckpt["log"], ckpt["best"]
        if env.is_main:
            log(f"fold {fold}: resuming after epoch {start_epoch} of {tcfg['epochs']}")
    scheduler.step_update(num_updates)

    images_seen, train_seconds = 0, 0.0
    for epoch in range(start_epoch, tcfg["epochs"]):
        if best["bad_epochs"] >= tcfg["early_stopping_patience"] and len(inner_rows):
            break
        t_epoch = time.time()
        ddp_model.train()
        torch.manual_seed(derived_seed(seed, fold, epoch, env.rank))  # dropout, drop-path
        gen = torch.Generator(device=device).manual_seed(derived_seed(seed, fold, epoch, env.rank, 1))
        order = np.random.default_rng(derived_seed(seed, fold, epoch)).permutation(train_rows)
        model.freeze_backbone = epoch < probe_epochs  # linear-probe phase: only the head learns
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"fold {fold} epoch {epoch + 1}/{tcfg['epochs']}",
                   disable=not (progress and env.is_main), unit="step", leave=False)
        optimizer.zero_grad(set_to_none=True)
        for step in bar:
            rows = order[step * global_batch:(step + 1) * global_batch][env.rank * bsz:(env.rank + 1) * bsz]
            x = augment_batch(batch_tensor(images, rows, device), cfg["augment"], gen)
            x = normalize(x, pre["mean"], pre["std"])
            y = torch.from_numpy(targets[rows]).to(device)
            sync = (step + 1) % accum == 0 or step + 1 == steps_per_epoch
            no_sync = ddp_model.no_sync() if env.enabled and not sync else contextlib.nullcontext()
            with no_sync:
                with ctx:
                    z = ddp_model(x)
                loss = training_loss(model, z, y, cfg["loss"]) / accum
                (scaler.scale(loss) if scaler else loss).backward()
            if sync:
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                num_updates += 1
                scheduler.step_update(num_updates)
                if ema is not None:
                    ema.update(model, step=num_updates)
            losses.append(loss.item() * accum)
            images_seen += len(rows) * env.world_size
            elapsed = train_seconds + (time.time() - t_epoch)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", img_s=f"{images_seen / max(elapsed, 1e-9):.0f}")
        train_seconds += time.time() - t_epoch
        eval_model = ema.module if ema is not None else model
        val_cos = float("nan")
        if tcfg["eval_every"] and ((epoch + 1) % tcfg["eval_every"] == 0 or epoch + 1 == tcfg["epochs"]):
            # The OOF fold's cosine is logged for monitoring only: it never picks an epoch.
            pred = predict_rows(eval_model, images, val_rows, pre, cfg["predict"]["batch_size"], device, precision,
                                env=env)
            val_cos = cosine(pred, targets[val_rows])
        if len(inner_rows):
            pred = predict_rows(eval_model, images, inner_rows, pre, cfg["predict"]["batch_size"], device, precision,
                                env=env)
            inner = cosine(pred, targets[inner_rows])
            if inner > best["score"]:
                best = {"score": inner, "epoch": epoch, "bad_epochs": 0,
                        "state": {k: v.detach().cpu().clone() for k, v in eval_model.state_dict().items()}}
            else:
                best["bad_epochs"] += 1
        lr = max(g["lr"] for g in optimizer.param_groups)
        log_rows.append([fold, epoch + 1, float(np.mean(losses)), val_cos, lr, round(time.time() - t_epoch, 2)])
        if env.is_main:
            log(f"fold {fold} epoch {epoch + 1}/{tcfg['epochs']}: loss {np.mean(losses):.4f} "
                f"val_cosine {val_cos:.4f} lr {lr:.2e} {time.time() - t_epoch:.1f}s")
            from core.io import atomic_path

            with atomic_path(last_path) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "ema": ema.state_dict() if ema is not None else None,
                            "scaler": scaler.state_dict() if scaler else None,
                            "epoch": epoch + 1, "num_updates": num_updates, "log": log_rows, "best": best}, tmp)
        barrier(env)
    model.freeze_backbone = False
    final = ema.module if ema is not None else model
    if best["state"] is not None:
        final.load_state_dict(best["state"])
    stats = {"epochs_trained": len(log_rows), "train_images_per_sec": images_seen / max(train_seconds, 1e-9)
             if images_seen else None, "train_seconds": round(train_seconds, 2),
             "inner_val_best_epoch": best["epoch"] + 1 if len(inner_rows) else None, "precision": precision}
    return final, pre, log_rows, stats


def build_model_for_inference(cfg, state_dict, device):
    """A fold checkpoint's model, without reaching for pretrained weights (the state dict has them all)."""
    mean = state_dict["target_mean"].cpu().numpy()
    std = state_dict["target_std"].cpu().numpy()
    model, pre = build_model(cfg, mean, std, load_weights=False)
    model.load_state_dict(state_dict)
    return model.to(device).eval(), pre
