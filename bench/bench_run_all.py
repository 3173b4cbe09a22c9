"""The whole default pipeline one stage at a time against stages side by side, and the trainer's thread scaling.

    python -m bench.bench_run_all [--jobs 1 auto] [--skip-pipeline] [--skip-trainer] [--steps 30] [--keep DIR]
                                  [run_all options passed through: --n-train 150 --model-set train.epochs=1 ...]

pipeline: `./run_all.sh` in a fresh work folder for each --jobs value (default: 1, today's one stage at a time
          with every core, then auto); prints each wall time, the ratio to the first, every stage's seconds, and
          each model's OOF cosine in both runs with their difference (the thread count per stage differs between
          the runs, and float rounding with it; at equal thread counts the arrays are identical, tests/test_pipeline)
trainer:  images/s of models.loop.train_one_epoch (bench/train_step.py: a uint8 cache, augmentation, AdamW) for each
          demo model at its configured size and batch, one process at 1 thread, one at every core's thread, and
          one 1-thread process per core side by side (their sum): what --jobs auto's THREADS_PER_RUN rests on

Run it alone on the machine (other jobs change both figures); it takes about twice the default run_all's time.
"""
import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIGS = ["configs/convnext_demo.yaml", "configs/eva_demo.yaml", "configs/vit_demo.yaml"]
DONE_LINE = re.compile(r"^-- \[\s*\d+s\] (\S+): done in (\d+) s$", flags=re.MULTILINE)


def load_average():
    return os.getloadavg()[0]


def run_pipeline(jobs, passthrough, root):
    """(seconds, {stage: seconds}, {run: metrics}) of ./run_all.sh --jobs JOBS in a fresh work folder under root."""
    work = Path(root) / f"work_jobs_{jobs}"
    if work.exists():  # run_all would skip its finished stages and the time would mean nothing
        sys.exit(f"error: {work}: exists; --keep needs a folder without work_jobs_{jobs}")
    cmd = [str(REPO / "run_all.sh"), "--work", str(work), "--jobs", jobs, *passthrough]
    env = dict(os.environ, PYTHON=os.environ.get("PYTHON", sys.executable))
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"run_all --jobs {jobs} failed (exit {res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    stages = {name: int(s) for name, s in DONE_LINE.findall(res.stdout)}
    runs = {p.name: json.loads((p / "metrics.json").read_text()) for p in sorted((work / "runs").iterdir())
            if (p / "metrics.json").is_file()}
    return seconds, stages, runs, work


def oof_agreement(a, b):
    """Mean cosine between two runs' OOF rows (1.0: the same directions)."""
    import numpy as np

    from core.runs import load_run

    ra, rb = load_run(a), load_run(b)
    if ra.oof_ids != rb.oof_ids:
        return float("nan")
    x, y = ra.oof.astype(np.float64), rb.oof.astype(np.float64)
    return float(np.mean(np.sum(x * y, 1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))))


def bench_pipeline(jobs_list, passthrough, keep=None):
    if keep:  # the work folders stay, e.g. to compare their arrays with another commit's run
        Path(keep).mkdir(parents=True, exist_ok=True)
    with (contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="bench_run_all.")) as root:
        results = []
        for jobs in jobs_list:
            load = load_average()
            seconds, stages, runs, work = run_pipeline(jobs, passthrough, root)
            results.append((jobs, seconds, stages, runs, work))
            print(f"run_all --jobs {jobs}: {seconds:.0f} s (1-min load average before: {load:.2f})", flush=True)
        first = results[0]
        for jobs, seconds, *_ in results[1:]:
            print(f"ratio --jobs {jobs} / --jobs {first[0]}: {seconds / first[1]:.3f}")
        names = list(dict.fromkeys(n for r in results for n in r[2]))
        print("stage seconds:  " + "  ".join(f"--jobs {r[0]:>4}" for r in results))
        for name in names:
            print(f"  {name:<22}" + "".join(f"{r[2].get(name, '-'):>12}" for r in results))
        print("OOF cosine per model:  " + "  ".join(f"--jobs {r[0]:>4}" for r in results)
              + "   last - first   1 - mean cosine between their OOF rows")
        for run in first[3]:
            scores = [r[3].get(run, {}).get("oof_cosine", float("nan")) for r in results]
            agree = oof_agreement(first[4] / "runs" / run, results[-1][4] / "runs" / run)
            print(f"  {run:<20}" + "".join(f"{s:>12.4f}" for s in scores)
                  + f"   {scores[-1] - scores[0]:+.6f}      {1 - agree:.1e}")


def trainer_worker(config, threads, steps):
    """In a child process: images/s of the trainer on `config` at `threads` threads."""
    import torch

    from bench.train_step import fold_model, synthetic_cache, trainer_seconds, unit_targets
    from models.config import load_config

    torch.set_num_threads(threads)
    cfg = load_config(REPO / config, ["train.epochs=1"])
    batch, size = cfg["train"]["batch_size"], cfg["image"]["size"]
    with tempfile.TemporaryDirectory() as tmp:
        images = synthetic_cache(Path(tmp) / "cache.npy", batch * 4, size)
        targets = unit_targets(len(images))
        fm = fold_model(cfg, targets, steps, "cpu")
        seconds, _ = trainer_seconds(fm, cfg, images, targets, steps, "cpu")
    print(json.dumps({"images_per_sec": steps * batch / seconds}))


def _workers(config, threads, steps, n):
    """images/s of n worker processes started together (each at `threads` threads)."""
    cmd = [sys.executable, "-m", "bench.bench_run_all", "--trainer-worker", config, str(threads), str(steps)]
    env = dict(os.environ, PYTHONPATH=str(REPO), **{v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1])["images_per_sec"] for p in procs]


def bench_trainer(steps, cores):
    print(f"trainer images/s ({steps} steps after a warm-up step; {cores} cores); the last column: {cores} 1-thread "
          f"processes side by side over one {cores}-thread process")
    print(f"  {'model':<16}{'1 thread':>10}{f'{cores} threads':>12}   {cores} x 1 thread side by side")
    for config in DEMO_CONFIGS:
        load = load_average()
        one = _workers(config, 1, steps, 1)[0]
        many = _workers(config, cores, steps, 1)[0]
        side = _workers(config, 1, steps, cores)
        print(f"  {Path(config).stem:<16}{one:>10.1f}{many:>12.1f}{sum(side):>14.1f} "
              f"({' + '.join(f'{s:.1f}' for s in side)})   {sum(side) / many:.2f}x   "
              f"(load average before: {load:.2f})", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--jobs", nargs="+", default=["1", "auto"], help="run_all --jobs values, timed in this order")
    ap.add_argument("--skip-pipeline", action="store_true", help="only the trainer's thread scaling")
    ap.add_argument("--skip-trainer", action="store_true", help="only the pipeline timings")
    ap.add_argument("--steps", type=int, default=30, help="trainer steps per measurement")
    ap.add_argument("--keep", metavar="DIR", help="keep each run's work folder as DIR/work_jobs_<jobs> (default: a "
                                                  "temporary folder, removed)")
    ap.add_argument("--trainer-worker", nargs=3, metavar=("CONFIG", "THREADS", "STEPS"), help=argparse.SUPPRESS)
    args, passthrough = ap.parse_known_args(argv)
    if args.trainer_worker:
        config, threads, steps = args.trainer_worker
        return trainer_worker(config, int(threads), int(steps))
    from pipeline.plan import cpu_cores

    print(f"python {sys.version.split()[0]}, {cpu_cores()} cores, run_all options: {' '.join(passthrough) or '(none)'}")
    if not args.skip_pipeline:
        bench_pipeline(args.jobs, passthrough, args.keep)
    if not args.skip_trainer:
        bench_trainer(args.steps, cpu_cores())


if __name__ == "__main__":
    main()
