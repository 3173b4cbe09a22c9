"""Speed and memory of the ensemble stacker on synthetic, memory-mapped OOF predictions.

    python -m bench.bench_stacker [--n 200000] [--m 4] [--k 5] [--lgbm-rows 2000,20000,160000]
        [--methods equal,per_model,per_dim,ridge] [--skip-per-dim-fit]

Measures, on N images x M models x 384 float32 (memory-mapped .npy, rows grouped by fold):
  * one per-dimension fit (on the K-1 training folds, shrinkage 0.1, from the per-model weights)
  * the ridge stacker: the pass that sums X'X, X'T per fold, one fit (every default alpha) and
    one scoring pass of all alphas on a held-out fold
  * the whole nested procedure of --methods: outer folds, inner-CV choice of the shrinkage /
    alpha over the default grids, refit on all rows
  * peak memory: ru_maxrss of this process (counts the memory-mapped pages it touched) and the
    tracemalloc peak (numpy's own allocations)
  * the LightGBM stacker's cost per dimension at the given row counts (on --lgbm-dims dimensions)
Targets (the issue's): one fit < 60 s, nested < 600 s, peak < 4 GiB.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

D = 384


def generate(folder, n, m, k, seed):
    """Write X.npy (M, N, D) L2-normalised rows, T.npy (N, D), folds.npy, all grouped by fold."""
    from tests.synthetic import fill_targets_and_predictions, noise_levels

    folder = Path(folder)
    T = np.lib.format.open_memmap(folder / "T.npy", mode="w+", dtype=np.float32, shape=(n, D))
    X = np.lib.format.open_memmap(folder / "X.npy", mode="w+", dtype=np.float32, shape=(m, n, D))
    chunk = 20000
    fill_targets_and_predictions(T, X, noise_levels(m, seed=seed, spread=0.1), seed=seed, chunk=chunk)
    for s in range(0, n, chunk):
        X[:, s:s + chunk] /= np.linalg.norm(X[:, s:s + chunk], axis=2, keepdims=True)
    X.flush()
    T.flush()
    np.save(folder / "folds.npy", np.sort(np.arange(n) % k))


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def bench_lgbm(data, rows, dims, seed):
    from ensemble.data import StackData
    from ensemble.lgbm_stacker import fit_lgbm_stacker

    folds = data.folds
    take = np.sort(np.random.default_rng(seed).choice(data.n_rows, size=min(rows, data.n_rows), replace=False))
    sub = StackData(np.ascontiguousarray(data.X[:, take, :dims]), np.ascontiguousarray(data.T[take, :dims]),
                    folds[take], data.names)
    train = sub.fold_values[1:]  # as in the nested procedure: K-1 folds, one of them for early stopping
    warm = StackData(sub.X[:, :, :1].copy(), sub.T[:, :1].copy(), sub.folds, sub.names)
    fit_lgbm_stacker(warm, train, seed=seed, num_threads=1)  # LightGBM's first call in a process costs ~2 s
    t = time.perf_counter()
    st = fit_lgbm_stacker(sub, train, seed=seed, num_threads=1)
    per_dim = (time.perf_counter() - t) / dims
    return per_dim, float(np.mean(st.best_rounds)), sub.count(train)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="images (default: %(default)s)")
    ap.add_argument("--m", type=int, default=4, help="models (default: %(default)s)")
    ap.add_argument("--k", type=int, default=5, help="folds (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", default=None, help="folder for the memory-mapped data (default: a temporary one)")
    ap.add_argument("--lgbm-rows", default="2000,20000,160000", help="row counts for the LightGBM cost ('' = skip)")
    ap.add_argument("--lgbm-dims", type=int, default=16, help="dimensions timed per LightGBM measurement")
    ap.add_argument("--skip-nested", action="store_true")
    ap.add_argument("--methods", default="equal,per_model,per_dim,ridge", help="methods of the nested procedure "
                    "(default: %(default)s)")
    ap.add_argument("--skip-per-dim-fit", action="store_true", help="skip the single per-dim fit measurement")
    ap.add_argument("--skip-ridge-fit", action="store_true", help="skip the single ridge fit measurement")
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    tmp = None
    folder = Path(args.dir) if args.dir else Path(tmp := tempfile.mkdtemp(prefix="bench_stacker_"))
    if args.generate_only:
        generate(folder, args.n, args.m, args.k, args.seed)
        return 0
    try:
        t = time.perf_counter()
        # a child process writes the data, so this process's peak memory is the stacker's alone
        subprocess.run([sys.executable, "-m", "bench.bench_stacker", "--generate-only", "--dir", str(folder),
                        "--n", str(args.n), "--m", str(args.m), "--k", str(args.k), "--seed", str(args.seed)],
                       check=True)
        print(f"data: {args.n:,} images x {args.m} models x {D} float32, memory-mapped "
              f"({(folder / 'X.npy').stat().st_size / 2 ** 30:.2f} GiB "
              f"+ {(folder / 'T.npy').stat().st_size / 2 ** 30:.2f} GiB), "
              f"{args.k} folds; generated in {time.perf_counter() - t:.0f} s", flush=True)
        run(folder, args)
    finally:
        if tmp:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def run(folder, args):
    from ensemble.data import StackData
    from ensemble.nested_cv import DEFAULT_RIDGE_ALPHAS, nested_cv
    from ensemble.objective import cosine_and_gradient, dimension_grams, mean_gram, model_stats
    from ensemble.ridge_stacker import fit_ridge, fold_sums, ridge_cosine_sums
    from ensemble.weight_fits import fit_dimension_weights_on, fit_model_weights

    tracemalloc.start()
    X = np.load(folder / "X.npy", mmap_mode="r")
    T = np.load(folder / "T.npy", mmap_mode="r")
    data = StackData(X, T, np.load(folder / "folds.npy"), [f"model{i}" for i in range(args.m)])
    train = data.fold_values[1:]
    print(f"load {os.cpu_count()} cpus; training set of one fit: {data.count(train):,} rows", flush=True)

    if not args.skip_per_dim_fit:
        t = time.perf_counter()
        stats = model_stats(data)
        grams = dimension_grams(data)
        t_stats = time.perf_counter() - t
        rows = np.concatenate([np.arange(*data.bounds[f]) for f in train])
        t = time.perf_counter()
        prior = fit_model_weights(stats, rows)
        t_model = time.perf_counter() - t
        W0 = np.repeat(prior[:, None], D, 1)
        t = time.perf_counter()
        for _ in range(3):
            cosine_and_gradient(data, W0, train)
        t_eval = (time.perf_counter() - t) / 3
        g = mean_gram(data, train, grams)
        t = time.perf_counter()
        W, info = fit_dimension_weights_on(data, train, prior, 0.1, grams=g)
        t_fit = time.perf_counter() - t
        del stats, grams
        print(f"row stats + per-dim Gram (one pass over all rows): {t_stats:.1f} s", flush=True)
        print(f"per-model fit: {t_model:.2f} s  weights {np.round(prior, 3).tolist()}")
        print(f"one objective+gradient pass ({data.count(train):,} rows): {t_eval:.2f} s")
        print(f"ONE PER-DIM FIT: {t_fit:.1f} s  ({info.evaluations} passes, {info.iterations} L-BFGS iterations, "
              f"train cosine {info.mean_cosine:.5f}, {info.message})  [target < 60 s]", flush=True)

    if not args.skip_ridge_fit:
        t = time.perf_counter()
        sums = fold_sums(data)
        t_sums = time.perf_counter() - t
        t = time.perf_counter()
        stackers = fit_ridge(sums, train, DEFAULT_RIDGE_ALPHAS, data.names)
        t_ridge = time.perf_counter() - t
        held = data.fold_values[:1]
        t = time.perf_counter()
        scores = ridge_cosine_sums(stackers, data, held)
        t_score = time.perf_counter() - t
        del sums, stackers
        print(f"ridge: per-fold X'X, X'T sums ({args.m * D} features, one pass over all rows): {t_sums:.1f} s")
        print(f"RIDGE: one fit on {data.count(train):,} rows, {len(DEFAULT_RIDGE_ALPHAS)} alphas: {t_ridge:.1f} s; "
              f"scoring every alpha on one fold ({data.count(held):,} rows): {t_score:.1f} s; cosine by alpha "
              + ", ".join(f"{a:g}: {s / n:.5f}" for a, (s, n) in zip(DEFAULT_RIDGE_ALPHAS, scores)), flush=True)

    if not args.skip_nested:
        t = time.perf_counter()
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        result = nested_cv(data, methods=methods, progress=True)
        t_nested = time.perf_counter() - t
        print(result.table())
        if result.chosen_shrinkage is not None:
            print(f"shrinkage per outer fold {result.shrinkage_per_fold}, final {result.chosen_shrinkage}")
        if result.ridge is not None:
            print(f"ridge alpha per outer fold {result.ridge.per_fold}, final {result.ridge.chosen}")
        parts = []
        for method in ("per_dim", "ridge"):
            fits = [f for f in result.fits if f["method"] == method]
            if fits:
                parts.append(f"{len(fits)} {method} fits, {sum(f['seconds'] for f in fits):.0f} s in them")
        print(f"NESTED PROCEDURE ({', '.join(methods)}): {t_nested:.0f} s  ({'; '.join(parts)})  [target < 600 s]",
              flush=True)

    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"PEAK MEMORY: ru_maxrss {peak_rss_gib():.2f} GiB (includes touched memory-mapped pages), "
          f"tracemalloc peak {heap_peak / 2 ** 30:.2f} GiB  [target < 4 GiB]", flush=True)

    for rows_text in [r for r in args.lgbm_rows.split(",") if r.strip()]:
        n_rows = int(rows_text)
        per_dim, rounds, n_train = bench_lgbm(data, n_rows, args.lgbm_dims, args.seed)
        print(f"LIGHTGBM: {n_rows:,} rows ({n_train:,} in the K-1 training folds): {per_dim:.3f} s per dimension "
              f"(mean {rounds:.0f} rounds, early stopping), {per_dim * D:.0f} s per 384-dim fit, "
              f"~{per_dim * D * (args.k + 1) / 60:.1f} min for the nested procedure (K fits + refit), 1 thread",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
