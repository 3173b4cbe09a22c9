"""Speed and memory of the ensemble stacker, reading synthetic runs from files as a user's runs are read.

    python -m bench.bench_stacker [--n 200000] [--m 4] [--k 5] [--dtype float32|float16]
        [--methods equal,per_model,per_dim,ridge] [--no-drop-one] [--dir DIR] [--lgbm-rows 2000,20000,160000]

A child process writes N images x M models x 384 as M run directories in the run format (oof.npy /
test.npy stored as --dtype, rows interleaved across the folds as a trainer writes them), their
targets folder and folds.csv (tests/synthetic.py's write_stacker_project); with --dir an existing
project there is reused. This process then does what `python -m ensemble.fit` does with them:
  * load: ensemble.inputs.load_inputs (manifest hashes, the finiteness check of every oof.npy)
  * the nested procedure of --methods with the refit and the nested OOF blend written to a file,
    and drop-one (timed apart): seconds and peak RSS per phase (statistics pass, each method,
    outer pass, oof blend, drop_one, refit), sampled from /proc/self/statm
  * at N <= 200,000: every method's nested score against the in-memory procedure (the same data,
    float32, rows sorted by fold, held in memory as a StackData: every per-dim fit on every row)
  * the LightGBM stacker's cost per dimension at the given row counts (on --lgbm-dims dimensions)
Targets (2,000,000 x 4 x 384, default methods, without drop-one): < 600 s, peak RSS < 8 GiB.
The last line: `nested N x M: T s, peak RSS P GiB` (T: load + nested procedure without drop-one;
P: this process's ru_maxrss, which counts touched memory-mapped pages).
"""
import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

D = 384
COMPARE_MAX_ROWS = 200_000  # the in-memory reference runs up to this size (its per-dim fits use every row)
COMPARE_TOLERANCE = 1e-4
TARGET_SECONDS, TARGET_GIB = 600, 8


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


class RssSampler:
    """This process's resident set, sampled every `interval` s on a thread: peaks per time window."""

    def __init__(self, interval=0.05):
        self.samples, self.interval, self._stop = [], interval, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        with open("/proc/self/statm") as f:
            while not self._stop.is_set():
                f.seek(0)
                cpu = os.times()
                self.samples.append((time.perf_counter(), int(f.read().split()[1]) * self._page,
                                     cpu.user + cpu.system))
                time.sleep(self.interval)

    def peak_gib(self, t0, t1):
        """Peak GiB sampled in [t0, t1]; None when the window held no sample (a phase shorter than `interval`)."""
        inside = [rss for t, rss, _ in self.samples if t0 <= t <= t1]
        return max(inside) / 2 ** 30 if inside else None

    def cpu_seconds(self, t0, t1):
        """This process's CPU seconds (user + system, all threads) between the samples nearest t0 and t1: under
        load, wall seconds overstate what a phase costs on a quiet machine."""
        inside = [cpu for t, _, cpu in self.samples if t0 <= t <= t1]
        return inside[-1] - inside[0] if len(inside) > 1 else None

    def stop(self):
        self._stop.set()
        self._thread.join()


def project_paths(folder, m):
    return [Path(folder) / "runs" / f"model{j}" for j in range(m)]


def generate(folder, args):
    """The project, written in a child process so that this process's peak memory is the stacker's alone."""
    if (project_paths(folder, args.m)[-1] / "manifest.json").is_file():
        print(f"data: reusing the project in {folder}", flush=True)
        return
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench.bench_stacker", "--generate-only", "--dir", str(folder),
                    "--n", str(args.n), "--m", str(args.m), "--k", str(args.k), "--seed", str(args.seed),
                    "--dtype", args.dtype], check=True)
    size = sum(p.stat().st_size for p in Path(folder).rglob("*.npy"))
    print(f"data: {args.n:,} images x {args.m} runs x {D}, oof.npy as {args.dtype}, {args.k} folds, "
          f"{size / 2 ** 30:.2f} GiB of .npy files; written in {time.perf_counter() - t:.0f} s", flush=True)


def run_nested(folder, args, sampler):
    """load_inputs + nested_cv from the files; returns (data, result, [(phase, s, peak GiB, CPU s)])."""
    from ensemble.inputs import load_inputs
    from ensemble.nested_cv import nested_cv

    t0 = time.perf_counter()
    data = load_inputs(project_paths(folder, args.m)).data
    t1 = time.perf_counter()
    result = nested_cv(data, methods=args.method_list, progress=args.progress, drop_one=args.drop_one,
                       predict_oof=True, oof_blend_path=Path(folder) / "oof_blend.npy")
    phases = [("load inputs", t1 - t0, sampler.peak_gib(t0, t1), sampler.cpu_seconds(t0, t1))]
    phases += [(name, b - a, sampler.peak_gib(a, b), sampler.cpu_seconds(a, b)) for name, a, b in result.phases]
    return data, result, phases


def print_nested(result, phases, args):
    print(result.table())
    if result.per_dim is not None:
        print(f"shrinkage per outer fold {result.shrinkage_per_fold}, final {result.chosen_shrinkage}")
    if result.ridge is not None:
        print(f"ridge alpha per outer fold {result.ridge.per_fold}, final {result.ridge.chosen}")
    for name, s in result.drop_one.items():
        print(f"drop-one: without {name}: {s['overall']:.5f}")
    print(f"selection rows (per-dim fits, hyper-parameter choices): {result.selection_rows:,}")
    for method in ("per_dim", "ridge"):
        fits = [f for f in result.fits if f["method"] == method]
        if fits:
            total = sum(f["seconds"] for f in fits)
            print(f"{method}: {len(fits)} fits, {total:.1f} s in them ({total / len(fits):.2f} s each)")
    print("phase".ljust(20) + "seconds".rjust(10) + "CPU s".rjust(10) + "peak RSS GiB".rjust(14))
    for name, seconds, gib, cpu in phases:
        print(name.ljust(20) + f"{seconds:10.1f}" + ("-" if cpu is None else f"{cpu:.1f}").rjust(10)
              + ("-" if gib is None else f"{gib:.2f}").rjust(14))
    print(f"(1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", flush=True)


def in_memory_data(args):
    """The bench's data as the earlier procedure held it: float32 StackData in memory, rows sorted by fold."""
    from core.metric import l2_normalize
    from ensemble.data import StackData
    from tests.synthetic import fill_targets_and_predictions, noise_levels

    T = np.empty((args.n, D), dtype=np.float32)
    X = np.empty((args.m, args.n, D), dtype=np.float32)
    fill_targets_and_predictions(T, X, noise_levels(args.m, seed=args.seed, spread=0.1), seed=args.seed)
    l2_normalize(T, out=T)
    for j in range(args.m):
        l2_normalize(X[j], out=X[j])
    return StackData(X, T, np.sort(np.arange(args.n) % args.k), [f"model{j}" for j in range(args.m)])


def compare_in_memory(result, args):
    """Every method's nested score from the files against the in-memory procedure; False if one is off by more
    than COMPARE_TOLERANCE."""
    from ensemble.nested_cv import nested_cv

    t = time.perf_counter()
    ref = nested_cv(in_memory_data(args), methods=args.method_list, refit=False)
    print(f"in-memory procedure (float32 StackData, {time.perf_counter() - t:.0f} s): nested scores")
    print("method".ljust(12) + "from files".rjust(12) + "in memory".rjust(12) + "difference".rjust(12))
    ok = True
    for method, s in result.methods.items():
        diff = s["overall"] - ref.methods[method]["overall"]
        ok &= abs(diff) <= COMPARE_TOLERANCE
        print(method.ljust(12) + f"{s['overall']:12.6f}{ref.methods[method]['overall']:12.6f}{diff:12.2e}")
    print(f"COMPARISON: every method within {COMPARE_TOLERANCE:g}: {'yes' if ok else 'NO'}", flush=True)
    return ok


def bench_lgbm(data, rows, dims, seed):
    """(seconds per dimension, mean boosting rounds, training rows) of the LightGBM stacker on `rows` rows."""
    from ensemble.data import StackData
    from ensemble.lgbm_stacker import fit_lgbm_stacker

    take = np.sort(np.random.default_rng(seed).choice(data.n_rows, size=min(rows, data.n_rows), replace=False))
    X, T = np.empty((data.n_models, len(take), dims), np.float32), np.empty((len(take), dims), np.float32)
    for s, e, Xc, Tc in data.chunks():  # one pass over the files, keeping the drawn rows
        lo, hi = np.searchsorted(take, [s, e])
        X[:, lo:hi], T[lo:hi] = Xc[:, take[lo:hi] - s, :dims], Tc[take[lo:hi] - s, :dims]
    order = np.argsort(data.folds[take], kind="stable")
    sub = StackData(X[:, order], T[order], data.folds[take][order], data.names)
    train = sub.fold_values[1:]  # as in the nested procedure: K-1 folds, one of them for early stopping
    warm = StackData(sub.X[:, :, :1].copy(), sub.T[:, :1].copy(), sub.folds, sub.names)
    fit_lgbm_stacker(warm, train, seed=seed, num_threads=1)  # LightGBM's first call in a process costs ~2 s
    t = time.perf_counter()
    st = fit_lgbm_stacker(sub, train, seed=seed, num_threads=1)
    return (time.perf_counter() - t) / dims, float(np.mean(st.best_rounds)), sub.count(train)


def print_lgbm(data, args):
    for rows_text in [r for r in args.lgbm_rows.split(",") if r.strip()]:
        n_rows = int(rows_text)
        per_dim, rounds, n_train = bench_lgbm(data, n_rows, args.lgbm_dims, args.seed)
        print(f"LIGHTGBM: {n_rows:,} rows ({n_train:,} in the K-1 training folds): {per_dim:.3f} s per dimension "
              f"(mean {rounds:.0f} rounds, early stopping), {per_dim * D:.0f} s per 384-dim fit, "
              f"~{per_dim * D * (args.k + 1) / 60:.1f} min for the nested procedure (K fits + refit), 1 thread",
              flush=True)


def run(folder, args):
    """Measure from the files; returns the exit status (1 when the in-memory comparison fails)."""
    sampler = RssSampler()
    data, result, phases = run_nested(folder, args, sampler)
    sampler.stop()
    peak = peak_rss_gib()  # before the comparison and LightGBM add their own memory
    seconds = sum(p[1] for p in phases if p[0] != "drop_one")
    print_nested(result, phases, args)
    ok = compare_in_memory(result, args) if args.n <= COMPARE_MAX_ROWS and args.compare else True
    print_lgbm(data, args)
    print(f"targets: < {TARGET_SECONDS} s, < {TARGET_GIB} GiB at 2,000,000 x 4 (methods "
          f"{','.join(args.method_list)}; load inputs included, drop-one excluded)")
    print(f"nested {args.n} x {args.m}: {seconds:.0f} s, peak RSS {peak:.2f} GiB")
    return 0 if ok else 1


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="images (default: %(default)s)")
    ap.add_argument("--m", type=int, default=4, help="models (default: %(default)s)")
    ap.add_argument("--k", type=int, default=5, help="folds (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="run storage of oof.npy")
    ap.add_argument("--dir", default=None, help="the project's folder, kept (reused when it holds one; "
                    "default: a temporary folder)")
    ap.add_argument("--methods", default="equal,per_model,per_dim,ridge", help="methods of the nested procedure "
                    "(default: %(default)s)")
    ap.add_argument("--no-drop-one", dest="drop_one", action="store_false", help="skip drop-one")
    ap.add_argument("--no-compare", dest="compare", action="store_false",
                    help=f"skip the in-memory comparison (run at N <= {COMPARE_MAX_ROWS:,})")
    ap.add_argument("--progress", action="store_true", help="progress bars")
    ap.add_argument("--lgbm-rows", default="2000,20000,160000", help="row counts for the LightGBM cost ('' = skip)")
    ap.add_argument("--lgbm-dims", type=int, default=16, help="dimensions timed per LightGBM measurement")
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.method_list = [m.strip() for m in args.methods.split(",") if m.strip()]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.generate_only:
        from tests.synthetic import write_stacker_project

        write_stacker_project(args.dir, args.n, m=args.m, k=args.k, seed=args.seed, storage=args.dtype)
        return 0
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench_stacker_"))
    try:
        generate(folder, args)
        return run(folder, args)
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
