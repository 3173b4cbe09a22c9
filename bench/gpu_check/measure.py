"""Per model: the trainer's step vs a bare step, images/s and peak memory at the config's batch size."""
import gc
import platform
import resource
import time

import torch

from bench.train_step import bare_seconds, fold_model, synthetic_cache, trainer_seconds, unit_targets

RATIO_GOAL = 0.9
CACHE_BATCHES = 4  # distinct batches in the synthetic image cache; the trainer takes its rows in turn


def device_info(device):
    """Device name, library versions and what the peak-memory figures count."""
    import open_clip
    import timm

    info = {"device": f"cpu ({platform.machine()})", "torch": torch.__version__, "cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(), "cudnn": None, "timm": timm.__version__,
            "open_clip": open_clip.__version__, "device_memory_gib": None, "bf16_supported": None,
            "peak_memory_counts": "process peak RSS, whole run (CPU: no per-model reset)"}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device=torch.cuda.get_device_name(device), cudnn=torch.backends.cudnn.version(),
                    device_memory_gib=round(props.total_memory / 2**30, 2),
                    compute_capability=f"{props.major}.{props.minor}", bf16_supported=torch.cuda.is_bf16_supported(),
                    peak_memory_counts="torch.cuda.max_memory_allocated, reset per phase")
    return info


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device):
    """Peak memory since `reset_peak` (CUDA); the process's peak RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def free_memory(device):
    """Return what the last model held to the GPU (reference cycles included), so the next starts from empty."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def measure_model(cfg, steps, device, tmp):
    """Trainer vs bare figures of one config: images/s, their ratio, peak memory, the training loss."""
    tcfg = cfg["train"]
    batch, accum = tcfg["batch_size"], tcfg["grad_accum"]
    images = synthetic_cache(tmp / f"{cfg['name']}.npy", batch * CACHE_BATCHES, cfg["image"]["size"])
    targets = unit_targets(len(images))
    t_build = time.perf_counter()
    fm = fold_model(cfg, targets, steps, device)
    build_s = time.perf_counter() - t_build
    reset_peak(device)
    bare_s = bare_seconds(fm, cfg, steps, device)
    bare_peak = peak_gib(device)
    reset_peak(device)
    trainer_s, st = trainer_seconds(fm, cfg, images, targets, steps, device)
    peak = peak_gib(device)
    bare, trainer = steps * batch / bare_s, steps * batch / trainer_s
    out = {"config_name": cfg["name"], "backbone": f"{cfg['backbone']['source']} {cfg['backbone']['name']}",
           "image_size": cfg["image"]["size"], "batch_size": batch, "grad_accum": accum,
           "grad_checkpointing": cfg["backbone"]["grad_checkpointing"], "ema_decay": tcfg["ema_decay"],
           "layer_decay": tcfg["layer_decay"], "loss": cfg["loss"]["type"],
           "precision_config": tcfg["precision"], "precision": fm.precision, "steps": steps,
           "bare_images_per_sec": bare, "trainer_images_per_sec": trainer, "ratio": trainer / bare,
           "ratio_goal": RATIO_GOAL, "bare_peak_memory_gib": bare_peak, "peak_memory_gib": peak,
           "optimizer_updates": st.num_updates, "trainer_loss": float(sum(st.epoch_losses) / len(st.epoch_losses)),
           "parameters_m": sum(p.numel() for p in fm.model.parameters()) / 1e6, "build_seconds": build_s}
    return out
