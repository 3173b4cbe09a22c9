"""Speed and memory of the OOF report (`python -m oof.report`) on synthetic runs.

    python -m bench.bench_report [--n 500000] [--m 4] [--k 5] [--keep DIR]

Writes, in a temporary folder (or --keep DIR): a synthetic training set's prompts.csv (with a
`source` column), targets folder, folds.csv + groups.csv (prompt groups of 1-3 rows, each in one
fold), M run directories written with core.runs.write_run (OOF, test, train_log.csv with 3 epochs
per fold, metrics.json with provenance), and test targets. Then it runs the report in a child
process and reports its wall time and peak memory (the child's ru_maxrss, which counts touched
memory-mapped pages too). Target (issue 9): < 2 minutes and < 4 GiB at 500,000 rows x 4 models.

`write_project` also serves tests/test_report.py at demo size (with images).
"""
import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

D = 384
SOURCES = ("laion", "diffusiondb", "chatgpt")
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "qua", "bri", "dro", "fle", "gra", "pho", "str")
COMMON = ("a", "the", "of", "in", "with", "and", "portrait", "photo", "painting", "city", "forest", "cat", "dog",
          "robot", "castle", "sunset", "ocean", "mountain", "detailed", "render", "style", "neon", "ancient")


def make_vocabulary(size, seed):
    rng = np.random.default_rng(seed)
    words = set(COMMON)
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 5)))))
    return np.array(sorted(words))


def make_prompts(n, seed=0, vocab_size=20000):
    """n synthetic prompts of 4-40 words, Zipf-like word frequencies, and a source per prompt."""
    rng = np.random.default_rng(seed)
    vocab = make_vocabulary(vocab_size, seed)
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    vocab = vocab[rng.permutation(len(vocab))]
    lengths = rng.integers(4, 41, size=n)
    words = vocab[rng.choice(len(vocab), size=int(lengths.sum()), p=p)]
    cuts = np.cumsum(lengths)[:-1]
    prompts = [" ".join(ws) for ws in np.split(words, cuts)]
    return prompts, rng.choice(SOURCES, size=n, p=[0.5, 0.3, 0.2])


def make_groups_and_folds(n, k, seed=0):
    """Prompt groups of 1-3 consecutive rows, each group in one fold."""
    rng = np.random.default_rng(seed + 5)
    starts = rng.random(n) < 0.7
    starts[0] = True
    groups = np.cumsum(starts) - 1
    fold_of_group = rng.integers(0, k, size=groups[-1] + 1)
    return groups, fold_of_group[groups]


def write_images(folder, ids, px=32, seed=0):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in ids:
        Image.fromarray(rng.integers(0, 256, size=(px, px, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def write_project(root, n, m=4, k=5, n_test=200, seed=0, images=False, chunk=20000, epochs=3):
    """Everything the report reads, under `root`.

    Returns dict(runs, targets, test_targets, folds, train, ids, test_ids, names, groups, folds_array)."""
    from core.folds import groups_path, save_folds, save_groups
    from core.io import save_csv, sha256_strings
    from ensemble import synthetic as S
    from core.runs import LOG_COLUMNS, write_run

    root = Path(root)
    ids, test_ids = S.make_ids(n), S.make_ids(n_test, prefix="test")
    train = root / "data" / "train"
    prompts, sources = make_prompts(n, seed)
    save_csv(train / "prompts.csv", pd.DataFrame({"imgId": ids, "prompt": prompts, "source": sources}))
    if images:
        write_images(train / "images", ids, seed=seed)
    groups, folds = make_groups_and_folds(n, k, seed)
    folds_path = root / "folds.csv"
    folds_meta = save_folds(folds_path, ids, folds, {"k": k, "synthetic": True})
    save_groups(groups_path(folds_path), ids, groups)
    tmp = root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    T = np.lib.format.open_memmap(tmp / "T.npy", mode="w+", dtype=np.float32, shape=(n + n_test, D))
    X = np.lib.format.open_memmap(tmp / "X.npy", mode="w+", dtype=np.float32, shape=(m, n + n_test, D))
    sigma = S.noise_levels(m, seed=seed, spread=0.1)
    for s in range(0, n + n_test, chunk):
        e = min(s + chunk, n + n_test)
        T[s:e] = S.make_targets(e - s, seed=seed + s + 1, mean_seed=seed)
        S.make_predictions(T[s:e], sigma, seed=seed + s, out=X[:, s:e])
    targets = S.write_targets_folder(root / "targets" / "train", ids, T[:n])
    test_targets = S.write_targets_folder(root / "targets" / "test", test_ids, T[n:])
    names = [f"model{j}" for j in range(m)]
    runs = []
    for j, name in enumerate(names):
        log = [[f, ep, 1.0 - 0.05 * ep - 0.01 * j, 0.5 + 0.02 * ep + 0.01 * j, 1e-3, 10.0]
               for f in range(k) for ep in range(epochs)]
        metrics = {"name": name, "model": "synthetic", "config": {"name": name, "train": {"lr": 1e-3 * (j + 1)}},
                   "config_hash": sha256_strings([name]), "wall_seconds": 100.0 + j, "train_images_per_sec": 50.0 + j,
                   "argv": ["python", "-m", "models.train", "--config", f"configs/{name}.yaml"],
                   "folds": {"path": str(folds_path), "sha256": folds_meta["folds_sha256"]},
                   "targets": {"path": str(targets), "key": sha256_strings(ids)},
                   "train_images": {"path": str(train), "n": n, "ids_sha256": sha256_strings(ids)},
                   "test_images": {"path": None, "n": n_test, "ids_sha256": sha256_strings(test_ids)}}
        run_dir = root / "runs" / name
        write_run(run_dir, ids, X[j, :n], test_ids, X[j, n:], np.asarray(T[:n].mean(axis=0)), metrics,
                  pd.DataFrame(log, columns=LOG_COLUMNS))
        runs.append(run_dir)
    del T, X
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    return {"runs": runs, "targets": targets, "test_targets": test_targets, "folds": folds_path, "train": train,
            "ids": ids, "test_ids": test_ids, "names": names, "groups": groups, "folds_array": folds}


REPORT_CHILD = (  # runs the report and prints its own peak memory and CPU time
    "import resource, sys; from oof.report.cli import main; rc = main(sys.argv[1:]); "
    "r = resource.getrusage(resource.RUSAGE_SELF); "
    "print(f'child ru_maxrss {r.ru_maxrss / 2 ** 20:.3f} GiB, CPU {r.ru_utime + r.ru_stime:.1f} s (user+sys)'); "
    "sys.exit(rc)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500_000)
    ap.add_argument("--m", type=int, default=4)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--keep", default=None, help="write the synthetic project here and keep it")
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.generate_only:  # in a child process, so that the report's process never inherits its memory
        write_project(Path(args.keep), args.n, m=args.m, k=args.k, n_test=args.n_test)
        return 0
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmpdir:
        root = Path(args.keep or tmpdir)
        t0 = time.perf_counter()
        gen = [sys.executable, "-m", "bench.bench_report", "--generate-only", "--keep", str(root), "--n", str(args.n),
               "--m", str(args.m), "--k", str(args.k), "--n-test", str(args.n_test)]
        subprocess.run(gen, env=env, check=True)
        print(f"wrote {args.n:,} rows x {args.m} runs under {root} in {time.perf_counter() - t0:.0f} s", flush=True)
        report_args = ["--runs", *(str(root / "runs" / f"model{j}") for j in range(args.m)), "--test-targets",
                       str(root / "targets" / "test"), "--out", str(root / "report"), "--quiet"]
        print("$ python -m oof.report " + shlex.join(report_args), flush=True)
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", REPORT_CHILD, *report_args], env=env, capture_output=True,
                             text=True)
        wall = time.perf_counter() - t0
        print(res.stdout.strip() + ("\n" + res.stderr.strip() if res.stderr.strip() else ""))
        if res.returncode != 0:
            print(f"report failed (exit {res.returncode})", file=sys.stderr)
            return res.returncode
        timings = json.loads((root / "report" / "report.json").read_text())["meta"]["timings_s"]
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        load = os.getloadavg()[0]
        print(f"report: {wall:.1f} s wall (incl. interpreter start; 1-min load average {load:.1f} on "
              f"{os.cpu_count()} cores), peak memory: the child's ru_maxrss above (it includes this process's "
              f"{own:.2f} GiB at fork) [targets: < 120 s, < 4 GiB]")
        print("stages (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
        print(f"html size {(root / 'report' / 'report.html').stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
