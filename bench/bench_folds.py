"""Fold grouping at scale: fast (faiss IVF) vs exact mode on planted near-duplicates.

    python -m bench.bench_folds [--n 500000] [--pairs 20000] [--exact-n 500000]

Prints each mode's time and the fraction of planted pairs (cosine 0.9-0.99) each put in one
group (the fast mode's recall; the exact mode must find all of them).
"""
import argparse
import time

import numpy as np

from core.folds import group_prompts
from tests.synthetic import planted_near_duplicates


def run_mode(x, src, dst, mode, threshold, **kw):
    t = time.perf_counter()
    groups = group_prompts(None, x, threshold=threshold, mode=mode, progress=True, **kw)
    seconds = time.perf_counter() - t
    recall = float((groups[src] == groups[dst]).mean())
    return seconds, recall, int(np.bincount(groups).max())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500_000)
    ap.add_argument("--pairs", type=int, default=20_000, help="planted near-duplicate pairs")
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--nprobe", type=int, default=None, help="default: the library default (nlist / 64)")
    ap.add_argument("--exact-n", type=int, default=0,
                    help="also time the exact mode on the first this-many vectors (0: skip; it is O(N^2))")
    args = ap.parse_args(argv)
    x, src, dst = planted_near_duplicates(args.n, args.pairs, seed=0)
    print(f"{args.n:,} unit vectors, {args.pairs:,} planted pairs, threshold {args.threshold}")
    s, r, big = run_mode(x, src, dst, "fast", args.threshold, **({"nprobe": args.nprobe} if args.nprobe else {}))
    print(f"fast  (IVF, nprobe {args.nprobe or 'auto'}): {s:8.1f} s   planted pairs grouped {r:.4%}   "
          f"largest group {big}")
    if args.exact_n:
        n = min(args.exact_n, args.n)
        keep = (src < n) & (dst < n)
        s, r, big = run_mode(x[:n], src[keep], dst[keep], "exact", args.threshold)
        print(f"exact (N = {n:,}):        {s:8.1f} s   planted pairs grouped {r:.4%}   largest group {big}")


if __name__ == "__main__":
    main()
