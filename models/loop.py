"""Training one fold: setup, `train_one_epoch`, `evaluate`, and `train_fold` that strings them together.

Images come from a source (models/data: cache, stream or shards) that yields the batches of a
deterministic per-epoch plan from any step on. Checkpoints (models/checkpoint.py) are taken at
optimizer-update boundaries: every epoch end, every `train.checkpoint_every`, and on SIGTERM /
SIGINT. Resume continues at the saved step of the saved epoch and gives the same result as an
uninterrupted run: the epoch's rows (data.sample_per_prompt) and batch plan come from
(seed, fold, epoch) and each step's augmentation / dropout seeds from (seed, fold, epoch, rank, step).
"""
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.faults import fault_point
from models.augment import augment_batch, normalize
from models.checkpoint import CheckpointSchedule, StopRequest, TrainingInterrupted, load_train_state, save_train_state
from models.data.sources import as_source
from models.engine import autocast_for, cosine, derived_seed, make_optimizer, make_scheduler, predict_rows
from models.fold_outputs import LAST_CHECKPOINT
from models.net import build_model, training_loss

STD_FLOOR = 1e-4
LOSS_SYNC_EVERY = 25  # steps between reading the loss off the device (a GPU sync) for the progress bar
PROMPT_DRAW = 5  # seed stream of data.sample_per_prompt's per-epoch draw
_log = logging.getLogger(__name__)


@dataclass
class FoldState:
    """Where a fold's training stands; everything in here goes into `last.pt`."""

    epoch: int = 0  # epochs finished
    step: int = 0  # micro-batches finished in the current epoch
    num_updates: int = 0
    epoch_losses: list = field(default_factory=list)  # per-step training loss of the current epoch
    epoch_seconds: float = 0.0
    images_seen: int = 0
    train_seconds: float = 0.0
    log_rows: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"score": -math.inf, "state": None, "epoch": -1, "bad_epochs": 0})


@dataclass
class FoldModel:
    """The model and everything that steps it."""

    model: torch.nn.Module
    ddp_model: torch.nn.Module
    pre: dict
    optimizer: object
    scheduler: object
    ema: object
    scaler: object
    autocast: object
    precision: str

    @property
    def eval_model(self):
        return self.ema.module if self.ema is not None else self.model


def split_inner_rows(train_rows, fraction, seed, fold, groups=None):
    """Hold out `fraction` of the training rows' groups for early stopping (never the OOF fold).

    `groups`: the group of every row (groups.csv: identical and near-duplicate prompts, as the folds
    hold them). Whole groups are held out, so no group is on both sides; the held-out share is a share
    of the groups. Required when fraction > 0."""
    train_rows = np.asarray(train_rows)
    if fraction <= 0:
        return train_rows, np.array([], dtype=np.int64)
    if groups is None:
        raise ValueError("an inner validation split needs the rows' prompt groups (groups.csv beside folds.csv)")
    rng = np.random.default_rng(derived_seed(seed, fold, 999))
    keys = np.unique(groups[train_rows])
    held = keys[rng.permutation(len(keys))[:max(1, int(len(keys) * fraction))]]
    inner = np.isin(groups[train_rows], held)
    return train_rows[~inner], train_rows[inner]


def build_fold_model(cfg, fold, targets, train_rows, updates_per_epoch, env):
    tcfg, device = cfg["train"], env.device
    # Target statistics from this fold's training rows only.
    mean = targets[train_rows].mean(axis=0)
    std = np.maximum(targets[train_rows].std(axis=0), STD_FLOOR)
    torch.manual_seed(derived_seed(cfg["seed"], fold))
    model, pre = build_model(cfg, mean, std)
    model.to(device)
    optimizer = make_optimizer(model, tcfg)
    scheduler = make_scheduler(optimizer, tcfg, updates_per_epoch)
    import timm.utils

    ema = timm.utils.ModelEmaV3(model, decay=tcfg["ema_decay"]) if tcfg["ema_decay"] > 0 else None
    ddp_model = model
    if env.enabled:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=tcfg["linear_probe_epochs"] > 0)
    ctx, precision = autocast_for(tcfg["precision"], device)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    return FoldModel(model, ddp_model, pre, optimizer, scheduler, ema, scaler, ctx, precision)


def checkpoint_state(fm, st):
    return {"model": fm.model.state_dict(), "optimizer": fm.optimizer.state_dict(),
            "ema": fm.ema.state_dict() if fm.ema is not None else None,
            "scaler": fm.scaler.state_dict() if fm.scaler else None,
            "epoch": st.epoch, "step": st.step, "num_updates": st.num_updates, "epoch_losses": st.epoch_losses,
            "epoch_seconds": st.epoch_seconds, "images_seen": st.images_seen, "train_seconds": st.train_seconds,
            "log": st.log_rows, "best": st.best}


def restore_state(fm, ckpt):
    fm.model.load_state_dict(ckpt["model"])
    fm.optimizer.load_state_dict(ckpt["optimizer"])
    if fm.ema is not None:
        fm.ema.load_state_dict(ckpt["ema"])
    if fm.scaler is not None and ckpt.get("scaler"):
        fm.scaler.load_state_dict(ckpt["scaler"])
    # Checkpoints from before step-level saving hold epoch ends only (step 0).
    return FoldState(epoch=ckpt["epoch"], step=ckpt.get("step", 0), num_updates=ckpt["num_updates"],
                     epoch_losses=list(ckpt.get("epoch_losses", [])), epoch_seconds=ckpt.get("epoch_seconds", 0.0),
                     images_seen=ckpt.get("images_seen", 0), train_seconds=ckpt.get("train_seconds", 0.0),
                     log_rows=ckpt["log"], best=ckpt["best"])


def _stop_everywhere(stop, env):
    """Every process stops at the same update when any of them got the signal."""
    flag = stop.signum or 0
    if env.enabled:
        import torch.distributed as dist

        t = torch.tensor([flag], dtype=torch.int64, device=env.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        flag = int(t.item())
    return flag


def train_one_epoch(fm, st, cfg, fold, source, targets, batches, env, save, stop, schedule, progress=True):
    """Train `batches` (this process's row arrays of epoch `st.epoch`, in step order) from `st.step` on;
    `save()` writes last.pt (main process)."""
    tcfg, device = cfg["train"], env.device
    accum, steps_per_epoch = tcfg["grad_accum"], len(batches)
    seed, epoch = cfg["seed"], st.epoch
    fm.ddp_model.train()
    fm.model.freeze_backbone = epoch < tcfg["linear_probe_epochs"]  # linear-probe phase: only the head learns
    bar = tqdm(range(st.step, steps_per_epoch), desc=f"fold {fold} epoch {epoch + 1}/{tcfg['epochs']}",
               disable=not (progress and env.is_main), unit="step", leave=False, initial=st.step,
               total=steps_per_epoch)
    pending, t_start, seconds_before = [], time.time(), st.epoch_seconds

    def read_losses():  # one device sync for the pending steps' losses
        if pending:
            st.epoch_losses.extend(torch.stack(pending).float().cpu().tolist())
            pending.clear()
    fm.optimizer.zero_grad(set_to_none=True)
    for step, images in zip(bar, source.iterate(batches[st.step:], device)):
        torch.manual_seed(derived_seed(seed, fold, epoch, env.rank, step))  # dropout, drop-path
        gen = torch.Generator(device=device).manual_seed(derived_seed(seed, fold, epoch, env.rank, step, 1))
        rows = batches[step]
        x = normalize(augment_batch(images, cfg["augment"], gen), fm.pre["mean"], fm.pre["std"])
        y = torch.from_numpy(targets[rows]).to(device)
        sync = (step + 1) % accum == 0 or step + 1 == steps_per_epoch
        no_sync = fm.ddp_model.no_sync() if env.enabled and not sync else contextlib.nullcontext()
        with no_sync:
            with fm.autocast:
                z = fm.ddp_model(x)
            loss = training_loss(fm.model, z, y, cfg["loss"]) / accum
            (fm.scaler.scale(loss) if fm.scaler else loss).backward()
        pending.append(loss.detach() * accum)  # read off the device in batches, not every step
        st.images_seen += len(rows) * env.world_size
        st.step = step + 1
        if sync:
            _optimizer_update(fm, st, tcfg)
        if len(pending) >= LOSS_SYNC_EVERY or step + 1 == steps_per_epoch:
            read_losses()
            elapsed = st.train_seconds + (time.time() - t_start)
            bar.set_postfix(loss=f"{np.mean(st.epoch_losses[-20:]):.4f}",
                            img_s=f"{st.images_seen / max(elapsed, 1e-9):.0f}")
        fault_point("train_step")
        if sync and step + 1 < steps_per_epoch:
            signum = _stop_everywhere(stop, env) if (env.enabled or stop.signum) else 0
            if signum or (env.is_main and schedule.due(st.num_updates)):
                read_losses()
                st.epoch_seconds = seconds_before + time.time() - t_start
                save()
                schedule.saved()
                if signum:
                    raise TrainingInterrupted(save.path, signum, st.epoch, st.step)
    st.epoch_seconds = seconds_before + time.time() - t_start
    st.train_seconds += time.time() - t_start


def _optimizer_update(fm, st, tcfg):
    if tcfg["clip_grad"]:
        if fm.scaler:
            fm.scaler.unscale_(fm.optimizer)
        torch.nn.utils.clip_grad_norm_(fm.model.parameters(), tcfg["clip_grad"])
    if fm.scaler:
        fm.scaler.step(fm.optimizer)
        fm.scaler.update()
    else:
        fm.optimizer.step()
    fm.optimizer.zero_grad(set_to_none=True)
    st.num_updates += 1
    fm.scheduler.step_update(st.num_updates)
    if fm.ema is not None:
        fm.ema.update(fm.model, step=st.num_updates)


def evaluate(model, source, rows, targets, cfg, pre, device, precision, env):
    """Mean cosine of the model's predictions for `rows` (every process gets the same number)."""
    pred = predict_rows(model, source, rows, pre, cfg["predict"]["batch_size"], device, precision, env=env)
    return cosine(pred, targets[rows])


def end_of_epoch(fm, st, cfg, fold, source, targets, val_rows, inner_rows, env):
    """Monitoring cosine, early-stopping record and the log row of the epoch just trained."""
    tcfg, epoch = cfg["train"], st.epoch
    val_cos = float("nan")  # the log file's empty cell: not evaluated this epoch
    evaluated = bool(tcfg["eval_every"]) and ((epoch + 1) % tcfg["eval_every"] == 0 or epoch + 1 == tcfg["epochs"])
    if evaluated:
        # The OOF fold's cosine is logged for monitoring only: it never picks an epoch.
        val_cos = evaluate(fm.eval_model, source, val_rows, targets, cfg, fm.pre, env.device, fm.precision, env)
    if len(inner_rows):
        inner = evaluate(fm.eval_model, source, inner_rows, targets, cfg, fm.pre, env.device, fm.precision, env)
        if inner > st.best["score"]:
            st.best = {"score": inner, "epoch": epoch, "bad_epochs": 0,
                       "state": {k: v.detach().cpu().clone() for k, v in fm.eval_model.state_dict().items()}}
        else:
            st.best["bad_epochs"] += 1
    lr = max(g["lr"] for g in fm.optimizer.param_groups)
    loss = float(np.mean(st.epoch_losses)) if st.epoch_losses else float("nan")
    st.log_rows.append([fold, epoch + 1, loss, val_cos, lr, round(st.epoch_seconds, 2)])
    if env.is_main:
        shown = f" val_cosine {val_cos:.4f}" if evaluated else ""
        _log.info("fold %d epoch %d/%d: loss %.4f%s lr %.2e %.1fs", fold, epoch + 1, tcfg["epochs"], loss, shown, lr,
                  st.epoch_seconds)
    st.epoch, st.step, st.epoch_losses, st.epoch_seconds = epoch + 1, 0, [], 0.0


def train_fold(cfg, fold, images, targets, train_rows, val_rows, fold_dir, env, resume=False, progress=True,
               sampler=None, groups=None):
    """Train one fold; return (final model, preprocessing, log rows, stats).

    `images`: a source (models/data) or the memory-mapped cache. `sampler`: a PromptSampler over the
    rows when data.sample_per_prompt is on (each epoch trains one image per prompt). `groups`: each
    row's prompt group (groups.csv), needed when train.inner_val_fraction > 0.
    Raises TrainingInterrupted after saving `last.pt` when SIGTERM / SIGINT arrives.
    """
    from models.distributed import barrier

    tcfg, seed, source = cfg["train"], cfg["seed"], as_source(images)
    train_rows, inner_rows = split_inner_rows(train_rows, tcfg["inner_val_fraction"], seed, fold, groups)

    def epoch_rows(epoch):
        return sampler.epoch_rows(train_rows, derived_seed(seed, fold, epoch, PROMPT_DRAW)) if sampler else train_rows

    global_batch = tcfg["batch_size"] * env.world_size
    steps_per_epoch = max(1, (sampler.groups(train_rows) if sampler else len(train_rows)) // global_batch)
    if tcfg["max_steps_per_epoch"]:
        steps_per_epoch = min(steps_per_epoch, tcfg["max_steps_per_epoch"])
    updates_per_epoch = max(1, -(-steps_per_epoch // tcfg["grad_accum"]))  # a last partial accumulation still steps
    fm = build_fold_model(cfg, fold, targets, train_rows, updates_per_epoch, env)
    st = FoldState()
    last_path = Path(fold_dir) / LAST_CHECKPOINT
    if env.is_main:  # a write killed before its rename leaves a temporary file; it was never last.pt
        for stale in Path(fold_dir).glob(f".{LAST_CHECKPOINT}.*.tmp"):
            stale.unlink()
    if resume and last_path.is_file():
        st = restore_state(fm, load_train_state(last_path, env.device))
        if env.is_main:
            where = f"epoch {st.epoch}" + (f", step {st.step} of epoch {st.epoch + 1}" if st.step else "")
            _log.info("fold %d: resuming after %s of %d", fold, where, tcfg["epochs"])
    fm.scheduler.step_update(st.num_updates)

    def save():
        if env.is_main:
            save_train_state(last_path, checkpoint_state(fm, st))
    save.path = last_path

    schedule = CheckpointSchedule(tcfg["checkpoint_every"])
    with StopRequest() as stop:
        while st.epoch < tcfg["epochs"]:
            if st.best["bad_epochs"] >= tcfg["early_stopping_patience"] and len(inner_rows):
                break
            batches = source.epoch_batches(epoch_rows(st.epoch), tcfg["batch_size"], env,
                                           derived_seed(seed, fold, st.epoch), steps_per_epoch)
            train_one_epoch(fm, st, cfg, fold, source, targets, batches, env, save, stop, schedule, progress)
            end_of_epoch(fm, st, cfg, fold, source, targets, val_rows, inner_rows, env)
            save()
            schedule.saved()
            barrier(env)
            signum = _stop_everywhere(stop, env) if (env.enabled or stop.signum) else 0
            if signum:
                raise TrainingInterrupted(last_path, signum, st.epoch, 0)
    fm.model.freeze_backbone = False
    final = fm.eval_model
    if st.best["state"] is not None:
        final.load_state_dict(st.best["state"])
    stats = {"epochs_trained": len(st.log_rows),
             "train_images_per_sec": st.images_seen / max(st.train_seconds, 1e-9) if st.images_seen else None,
             "train_seconds": round(st.train_seconds, 2),
             "inner_val_best_epoch": st.best["epoch"] + 1 if len(inner_rows) else None, "precision": fm.precision}
    return final, fm.pre, st.log_rows, stats
