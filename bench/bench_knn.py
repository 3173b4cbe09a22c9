"""kNN search at scale: exact (faiss flat) vs IVF on a float16 bank of clustered unit vectors.

    python -m bench.bench_knn [--rows 1000000] [--queries 16000] [--dims 384 1024] [--k 20]
                              [--clusters 4000] [--nprobe 4 8 16 32 64] [--scratch DIR] [--out JSON]

For each d: a float16 bank memory-mapped from disk, as models/knn.py reads its feature cache,
searched through models.knn_index.BankIndex. The exact search gives the reference top-k; each
IVF nprobe reports its recall of it (|IVF top-k & exact top-k| / k, averaged over queries).
Every stage runs in a fresh process: its time, and its peak resident memory (ru_maxrss: the
bank's pages it touched count too).

The data are NOT random unit vectors: those have no cluster structure, the worst case for IVF
(every cell boundary cuts through the neighbours). Real image features are clustered, so the
bank and the queries are drawn from a mixture of `--clusters` gaussians on the sphere: centres
uniform, lognormal cluster sizes, per-cluster spread such that two members of a cluster have a
cosine of ~0.5-0.8 and members of different clusters ~0. Recall on real features may differ.
"""
import argparse
import json
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from core.io import write_json
from tests.synthetic import clustered_unit_vectors, mixture


def _peak_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _exact_job(bank_path, query_path, k, out_path):
    from models.knn_index import BankIndex

    bank, queries = np.load(bank_path, mmap_mode="r"), np.load(query_path)
    t = time.perf_counter()
    _, idx = BankIndex(bank, "flat").search(queries, k)
    seconds = time.perf_counter() - t
    np.save(out_path, idx)
    return {"seconds": round(seconds, 1), "peak_rss_gib": round(_peak_gib(), 2)}


def _ivf_job(bank_path, query_path, k, exact_path, nprobes, nlist, stop_recall, stop_seconds):
    from models import knn_index

    bank, queries, exact = np.load(bank_path, mmap_mode="r"), np.load(query_path), np.load(exact_path)
    nlist = nlist or knn_index.default_nlist(len(bank))
    t = time.perf_counter()
    centroids = knn_index.train_cells(bank, nlist, seed=0)
    t_train = time.perf_counter() - t
    index = knn_index.BankIndex(bank, "ivf", centroids=centroids)
    t_build = time.perf_counter() - t
    runs = []
    for nprobe in nprobes:
        index.nprobe = nprobe
        t = time.perf_counter()
        _, idx = index.search(queries, k)
        seconds = time.perf_counter() - t
        recall = float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(idx, exact)]))
        runs.append({"nprobe": nprobe, "seconds": round(seconds, 1), "recall": round(recall, 4)})
        print(f"    ivf nprobe {nprobe:4d}: {seconds:7.1f} s  recall@{k} {recall:.4f}", flush=True)
        if recall >= stop_recall or seconds > stop_seconds:
            break
    return {"nlist": nlist, "train_seconds": round(t_train, 1), "build_seconds": round(t_build, 1),
            "searches": runs, "peak_rss_gib": round(_peak_gib(), 2)}


def _in_child(fn, *args):
    """Run one stage in a fresh process (its own peak memory); the load average around it."""
    load0 = os.getloadavg()[0]
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as ex:
        out = ex.submit(fn, *args).result()
    return {**out, "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}


def bench_dim(d, args, scratch, keep):
    bank, queries = scratch / f"bank_{d}.npy", scratch / f"queries_{d}.npy"
    # the exact top-k is kept (a few MB): an IVF-only rerun (--reuse-exact) regenerates the same seeded data
    exact = keep / f"exact_n{args.rows}_q{args.queries}_d{d}_k{args.k}_c{args.clusters}.npy"
    t = time.perf_counter()
    centres = mixture(args.clusters, d, seed=d)
    clustered_unit_vectors(bank, args.rows, d, centres, seed=d + 1)
    clustered_unit_vectors(queries, args.queries, d, centres, seed=d + 2)
    print(f"d = {d}: {args.rows:,} x {d} float16 bank ({bank.stat().st_size / 2**30:.2f} GiB), "
          f"{args.queries:,} queries, generated in {time.perf_counter() - t:.0f} s", flush=True)
    res = {"d": d, "bank_gib": round(bank.stat().st_size / 2**30, 3)}
    if args.reuse_exact and exact.is_file():
        print(f"    exact: reusing {exact}", flush=True)
    else:
        res["exact"] = _in_child(_exact_job, str(bank), str(queries), args.k, str(exact))
        e = res["exact"]
        print(f"    exact (faiss flat): {e['seconds']:7.1f} s  peak RSS {e['peak_rss_gib']:.2f} GiB  "
              f"load {e['load_avg_1min']}", flush=True)
    res["ivf"] = _in_child(_ivf_job, str(bank), str(queries), args.k, str(exact), args.nprobe, args.nlist,
                           args.stop_recall, args.stop_seconds)
    v = res["ivf"]
    print(f"    ivf: nlist {v['nlist']}, cells trained in {v['train_seconds']} s, built in {v['build_seconds']} s, "
          f"peak RSS {v['peak_rss_gib']:.2f} GiB  load {v['load_avg_1min']}", flush=True)
    for p in (bank, queries):
        p.unlink()
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.bench_knn", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="bank rows (default: %(default)s)")
    ap.add_argument("--queries", type=int, default=16_000, help="default: %(default)s")
    ap.add_argument("--dims", type=int, nargs="+", default=[384, 1024], help="default: %(default)s")
    ap.add_argument("--k", type=int, default=20, help="default: %(default)s")
    ap.add_argument("--clusters", type=int, default=4000, help="gaussians in the mixture (default: %(default)s)")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16, 32, 64], help="default: %(default)s")
    ap.add_argument("--nlist", type=int, default=None, help="IVF cells (default: ~sqrt(rows), as models.knn)")
    ap.add_argument("--stop-recall", type=float, default=0.99, help="stop the nprobe sweep at this recall")
    ap.add_argument("--stop-seconds", type=float, default=120, help="... or once a search takes this long")
    ap.add_argument("--scratch", default=None, help="folder for the memory-mapped banks (default: a temporary one)")
    ap.add_argument("--reuse-exact", action="store_true", help="take the exact top-k an earlier run kept beside --out")
    ap.add_argument("--out", default="work/bench/knn.json", help="results (default: %(default)s)")
    args = ap.parse_args(argv)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()}", flush=True)
    results = {"args": vars(args), "cpus": os.cpu_count(), "dims": []}
    keep = Path(args.out).parent
    keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        for d in args.dims:
            results["dims"].append(bench_dim(d, args, Path(tmp), keep))
            write_json(args.out, results)
    print(json.dumps(results["dims"], indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
