"""The command line of bench.gpu_check (its docstring is the package's)."""
import argparse
import tempfile
import time
from pathlib import Path

import torch

import bench.gpu_check as package
from bench.gpu_check.loader import stream_rate, write_pngs
from bench.gpu_check.measure import device_info, free_memory, measure_model
from bench.gpu_check.plan import GPU, MODELS, SMOKE, model_config
from bench.gpu_check.sd2 import check_pipeline_folder, sd2_rate
from bench.gpu_check.table import format_table
from core.errors import InputError, exit_on_input_error
from core.io import write_json

BUDGET_SECONDS = 240  # the whole GPU check, model building included


class NoCudaDevice(InputError):
    """The GPU check was asked for on a machine without CUDA."""


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=package.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON file of the figures (written atomically)")
    ap.add_argument("--smoke", action="store_true", help="the same code on the CPU, tiny members at toy sizes")
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="a subset of the models")
    ap.add_argument("--steps", type=int,
                    help=f"timed micro-batches per model (default {GPU.steps}, smoke {SMOKE.steps})")
    ap.add_argument("--images", type=int, help=f"synthetic PNGs for the streaming source (default {GPU.images}, "
                                               f"{GPU.png_px} px)")
    ap.add_argument("--sd2", metavar="DIR", help="a local Stable Diffusion 2 pipeline folder: measure its images/s")
    ap.add_argument("--sd2-batch", type=int, help=f"prompts per SD2 batch (default {GPU.sd2_batch})")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every model, e.g. train.batch_size=16 on a smaller GPU")
    args = ap.parse_args(argv)
    for name in ("steps", "images", "sd2_batch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def measure_with_stream(cfg, steps, device, tmp, frame):
    """One model's row: trainer vs bare, then the streaming source against the trainer's demand."""
    t = time.perf_counter()
    try:
        row = measure_model(cfg, steps, device, tmp)
        row.update(stream_rate(cfg, frame, device))
        row["stream_vs_trainer"] = row["stream_images_per_sec"] / row["trainer_images_per_sec"]
    except torch.OutOfMemoryError as e:
        row = {"error": f"out of memory at batch {cfg['train']['batch_size']} ({str(e).splitlines()[0]}); "
                        f"a smaller GPU needs --set train.batch_size=... with a larger train.grad_accum"}
    free_memory(device)
    row["seconds"] = time.perf_counter() - t
    return row


def run_check(args, scale, device, configs, start):
    """Measure every model (then SD2), rewriting the JSON after each; return the report."""
    steps, n_images = args.steps or scale.steps, args.images or scale.images
    report = {"smoke": args.smoke, "complete": False, "environment": device_info(device), "steps": steps,
              "torch_threads": torch.get_num_threads(), "budget_seconds": BUDGET_SECONDS, "models": {}, "sd2": None,
              "sd2_skipped": None if args.sd2 else "no --sd2 pipeline folder given"}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        tmp = Path(tmp)
        frame = write_pngs(tmp / "png", n_images, scale.png_px)
        report["loader"] = {"images": n_images, "png_px": scale.png_px,
                            "png_mib": sum(Path(p).stat().st_size for p in frame["path"]) / 2**20}
        for key, cfg in configs.items():
            report["models"][key] = row = measure_with_stream(cfg, steps, device, tmp, frame)
            print(f"{key}: {row['seconds']:.0f} s", flush=True)
            write_json(args.out, report)  # what is measured so far survives a crash in the next model
    if args.sd2:
        batch = args.sd2_batch or scale.sd2_batch
        report["sd2"] = sd2_rate(args.sd2, device, scale.sd2_px, scale.sd2_steps, batch)
        free_memory(device)
    report["wall_seconds"] = time.perf_counter() - start
    report["complete"] = True
    write_json(args.out, report)
    return report


@exit_on_input_error
def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    if not args.smoke and not torch.cuda.is_available():
        raise NoCudaDevice("no CUDA device (torch.cuda.is_available() is False): the GPU figures need one; "
                           "--smoke runs the same checks on the CPU at toy sizes")
    if args.sd2:
        check_pipeline_folder(args.sd2)
    scale = SMOKE if args.smoke else GPU
    device = torch.device("cpu" if args.smoke else "cuda")
    configs = {key: model_config(key, scale, args.set) for key in args.models}  # bad overrides fail here, at once
    threads = torch.get_num_threads()
    if args.smoke:  # toy models gain nothing from threads, and on a busy CPU OpenMP threads waiting on each other
        torch.set_num_threads(1)  # made the smoke run 5x slower
    try:
        report = run_check(args, scale, device, configs, start)
    finally:
        torch.set_num_threads(threads)
    print(format_table(report))
    over = "" if args.smoke or report["wall_seconds"] <= BUDGET_SECONDS else f" (over the {BUDGET_SECONDS} s budget)"
    print(f"{report['wall_seconds']:.0f} s{over}; wrote {args.out}")
    return 1 if any("error" in row for row in report["models"].values()) else 0
