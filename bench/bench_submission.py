"""Submission writer vs a plain pandas DataFrame.to_csv of the same rows, in one run.

    python -m bench.bench_submission [--n 16000] [--repeat 2]
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.submission import read_submission, write_submission


def pandas_write(path, ids, emb):
    dim = emb.shape[1]
    keys = np.char.add(np.repeat(np.asarray(ids, dtype=str), dim),
                       np.tile(np.char.add("_", np.arange(dim).astype(str)), len(ids)))
    pd.DataFrame({"imgId_eId": keys, "val": emb.reshape(-1)}).to_csv(path, index=False)


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16000, help="images (x384 rows)")
    ap.add_argument("--repeat", type=int, default=2, help="best of this many timings each")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(args.n, 384)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ids = [f"{i:09x}" for i in rng.permutation(1 << 30)[: args.n]]
    with tempfile.TemporaryDirectory() as d:
        ours, theirs = Path(d) / "ours.csv", Path(d) / "pandas.csv"
        t_ours = best_of(lambda: write_submission(ours, ids, emb), args.repeat)
        t_pd = best_of(lambda: pandas_write(theirs, ids, emb), args.repeat)
        back_ids, back = read_submission(ours)
        assert back_ids == ids and np.array_equal(back, emb), "writer did not round-trip"
        print(f"rows: {args.n * 384:,} ({args.n} images)")
        print(f"write_submission: {t_ours:.2f} s ({ours.stat().st_size / 1e6:.0f} MB)")
        print(f"pandas to_csv:    {t_pd:.2f} s ({theirs.stat().st_size / 1e6:.0f} MB)")
        print(f"speed-up (pandas / ours): {t_pd / t_ours:.2f}x   (target >= 3x)")


if __name__ == "__main__":
    main()
