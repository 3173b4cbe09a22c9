"""K-fold assignment grouped by prompt similarity.

Identical prompts, and prompts whose embeddings have cosine >= `threshold`, are joined
into one group (transitively, by union-find) and every group lands in a single fold, so
near-duplicate prompts never sit on both sides of a CV split.

Two ways to find the similar pairs:
    exact  chunked all-pairs dot products (correct by construction, O(N^2))
    fast   a faiss IVF index searched by range (approximate; `bench/bench_folds.py`
           measures its recall on planted near-duplicates)

Output: folds.csv (imgId,fold), folds.json (settings, group statistics, hash) and, beside them,
groups.csv (imgId,group): the similarity group of each row, for analyses that resample whole
groups. It is a separate file so that folds.csv, its sha256 and every run trained on it stay valid.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DataError, InputError, exit_on_input_error
from core.ids import read_id_table
from core.io import save_csv, sha256_file, write_json
from core.metric import l2_normalize

FOLDS_FILE_COLUMNS = ("imgId", "fold")
FOLDS_FILE = "folds.csv"  # imgId,fold (the usual name; any path is accepted); its settings and hash: folds.json
GROUPS_FILE = "groups.csv"
GROUPS_FILE_COLUMNS = ("imgId", "group")


class FoldGroupingError(InputError):
    """Grouping chained too many prompts together to make balanced folds (a ValueError, as every InputError)."""


class UnionFind:
    """Disjoint sets over 0..n-1 with batched unions (scipy's connected components)."""

    def __init__(self, n):
        self.n = n
        self.root = np.arange(n, dtype=np.int64)

    def union_pairs(self, a, b):
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        if a.size == 0:
            return
        # Existing sets enter as star edges i -> root(i); new pairs join them.
        rows = np.concatenate([np.arange(self.n), a])
        cols = np.concatenate([self.root, b])
        graph = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(self.n, self.n))
        _, labels = connected_components(graph, directed=False)
        # Represent each set by its smallest member, independent of label numbering.
        first = np.full(labels.max() + 1, self.n, dtype=np.int64)
        np.minimum.at(first, labels, np.arange(self.n))
        self.root = first[labels]

    def groups(self):
        """Group label per item, numbered 0..G-1 in order of first appearance."""
        _, first_idx, inverse = np.unique(self.root, return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first_idx))
        return order[inverse]


def similar_pairs_exact(emb, threshold, chunk=2048, progress=False):
    """Yield (i, j) index arrays, i < j, of every pair with cosine >= threshold."""
    from tqdm import tqdm

    x = l2_normalize(emb)
    n = len(x)
    for start in tqdm(range(0, n, chunk), desc="exact pairs", disable=not progress, unit="chunk"):
        stop = min(start + chunk, n)
        sims = x[start:stop] @ x[start:].T  # only columns j >= start: each pair once
        r, c = np.nonzero(sims >= threshold)
        keep = c > r  # c indexes from `start`, r from `start`: drop self and lower triangle
        yield r[keep] + start, c[keep] + start


def similar_pairs_fast(emb, threshold, nlist=None, nprobe=None, seed=0, progress=False):
    """Yield (i, j) index arrays of pairs with cosine >= threshold found through an IVF partition.

    faiss k-means splits the vectors into `nlist` cells; each vector is listed in its `nprobe`
    nearest cells. For every cell, the vectors whose nearest cell it is are compared (one BLAS
    matrix product) with every vector listed there, so a pair is found when either vector's
    nearest cell is among the other's `nprobe` cells. Cost ~ N^2 * nprobe / nlist dot products,
    done as dense GEMMs rather than per-query scans (several times faster on a CPU).
    """
    import faiss
    from tqdm import tqdm

    x = l2_normalize(emb)
    n, d = x.shape
    if nlist is None:
        nlist = int(min(4096, max(1, 3 * np.sqrt(n))))
    if nprobe is None:
        # Recall depends mostly on nprobe / nlist: at 500,000 vectors 1/66 grouped 99.96% of the
        # planted pairs, 1/40 99.995% at 1.5x the cost (python -m bench.bench_folds).
        nprobe = max(8, nlist // 64)
    nprobe = min(nprobe, nlist)
    rng = np.random.default_rng(seed)
    n_train = min(n, 20 * nlist)
    kmeans = faiss.Kmeans(d, nlist, niter=8, seed=seed, spherical=True, verbose=False,
                          max_points_per_centroid=20, min_points_per_centroid=8)
    kmeans.train(x[np.sort(rng.choice(n, n_train, replace=False))])
    _, probes = kmeans.index.search(x, nprobe)  # (n, nprobe) nearest cells, nearest first
    primary = probes[:, 0]
    home_order = np.argsort(primary, kind="stable")
    home_bounds = np.searchsorted(primary[home_order], np.arange(nlist + 1))
    flat_cells = probes.reshape(-1)
    listed_order = np.argsort(flat_cells, kind="stable")
    listed_bounds = np.searchsorted(flat_cells[listed_order], np.arange(nlist + 1))
    listed_rows = listed_order // nprobe
    for c in tqdm(range(nlist), desc="fast pairs", disable=not progress, unit="cell"):
        home = home_order[home_bounds[c]:home_bounds[c + 1]]
        listed = listed_rows[listed_bounds[c]:listed_bounds[c + 1]]
        if home.size == 0 or listed.size == 0:
            continue
        sims = x[home] @ x[listed].T
        r, k = np.nonzero(sims >= threshold)
        a, b = home[r], listed[k]
        keep = a != b
        yield np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])


def group_prompts(prompts, emb, threshold=0.9, mode="exact", progress=False, **search_kw):
    """Group label per row: identical prompts and cosine >= threshold are joined transitively.

    `prompts=None` groups by embeddings alone."""
    if prompts is None and emb is None:
        raise ValueError("need prompts, embeddings or both")
    n = len(prompts) if prompts is not None else len(emb)
    if emb is not None and len(emb) != n:
        raise ValueError(f"{len(emb)} embeddings for {n} prompts")
    uf = UnionFind(n)
    if prompts is not None:
        codes = pd.Series([str(p).strip() for p in prompts]).factorize()[0]
        first = pd.Series(np.arange(n)).groupby(codes).transform("min").to_numpy()
        uf.union_pairs(np.arange(n), first)
    if threshold is not None and threshold <= 1.0 and emb is not None:
        finder = {"exact": similar_pairs_exact, "fast": similar_pairs_fast}.get(mode)
        if finder is None:
            raise ValueError(f"unknown mode {mode!r} (exact or fast)")
        a_acc, b_acc, pending = [], [], 0
        for a, b in finder(emb, threshold, progress=progress, **search_kw):
            a_acc.append(a)
            b_acc.append(b)
            pending += a.size
            if pending > 2_000_000:  # fold pairs into the sets to bound memory
                uf.union_pairs(np.concatenate(a_acc), np.concatenate(b_acc))
                a_acc, b_acc, pending = [], [], 0
        if a_acc:
            uf.union_pairs(np.concatenate(a_acc), np.concatenate(b_acc))
    return uf.groups()


def assign_folds(groups, k, seed=42):
    """Assign whole groups to k folds, largest first, each to the currently smallest fold."""
    groups = np.asarray(groups)
    sizes = np.bincount(groups)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sizes))
    order = order[np.argsort(-sizes[order], kind="stable")]
    counts = np.zeros(k, dtype=np.int64)
    fold_of_group = np.empty(len(sizes), dtype=np.int64)
    for g in order:
        f = int(np.argmin(counts))
        fold_of_group[g] = f
        counts[f] += sizes[g]
    relabel = rng.permutation(k)  # the seed, not the group order, decides which fold is "0"
    return relabel[fold_of_group[groups]]


def check_group_sizes(groups, k, threshold):
    sizes = np.bincount(groups)
    n = len(groups)
    limit = n / (2 * k)
    if sizes.max() > limit:
        raise FoldGroupingError(
            f"grouping at cosine >= {threshold} chained {sizes.max()} of {n} prompts "
            f"({sizes.max() / n:.1%}) into one group, more than N/(2K) = {limit:.0f}: "
            f"folds cannot be balanced. Use a higher --threshold (e.g. {min(0.99, (threshold or 0.9) + 0.05):.2f})."
        )


def make_folds(ids, prompts, emb, k=5, threshold=0.9, mode="exact", seed=42, progress=False, **search_kw):
    """Return (fold per row, group per row)."""
    if k < 2:
        raise ValueError("k must be >= 2")
    groups = group_prompts(prompts, emb, threshold=threshold, mode=mode, progress=progress, **search_kw)
    check_group_sizes(groups, k, threshold)
    return assign_folds(groups, k, seed), groups


def group_stats(groups):
    sizes = np.bincount(groups)
    return {
        "n": int(len(groups)),
        "n_groups": int(len(sizes)),
        "largest_group": int(sizes.max()),
        "largest_group_fraction": float(sizes.max() / len(groups)),
        "rows_in_groups_of_2_or_more": int(sizes[sizes >= 2].sum()),
        "size_histogram": {str(s): int(c) for s, c in zip(*np.unique(sizes, return_counts=True))},
    }


def save_folds(path, ids, folds, meta):
    path = Path(path)
    save_csv(path, pd.DataFrame({"imgId": list(ids), "fold": np.asarray(folds, dtype=np.int64)}))
    meta = dict(meta, folds_sha256=sha256_file(path))
    write_json(path.with_suffix(".json"), meta)
    return meta


def load_folds(path, ids=None):
    """Read folds.csv; with `ids`, return the fold of each id in that order (all must be present)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "folds file not found; run `python -m core.folds` first")
    frame = read_id_table(path, FOLDS_FILE_COLUMNS)
    frame["fold"] = _integers(path, frame["fold"], "fold")
    if ids is None:
        return frame
    pos = dict(zip(frame["imgId"], frame["fold"]))
    absent = [i for i in ids if i not in pos]
    if absent:
        raise DataError(path, f"{len(absent)} imgIds have no fold, e.g. {absent[:3]}")
    return np.array([pos[i] for i in ids], dtype=np.int64)


def _integers(path, column, name):
    """A text column of integers as int64; anything else is a DataError naming the first bad row."""
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise DataError(path, f"row {row + 1}: {name} {column.iat[row]!r} is not an integer")
    return values.astype(np.int64)


def groups_path(folds_path):
    """groups.csv beside a folds file."""
    return Path(folds_path).with_name(GROUPS_FILE)


def save_groups(path, ids, groups):
    """Write groups.csv (imgId,group) atomically; returns the path."""
    path = Path(path)
    save_csv(path, pd.DataFrame({"imgId": list(ids), "group": np.asarray(groups, dtype=np.int64)}))
    return path


def load_groups(folds_path, ids, folds=None):
    """int64 group of each id (in that order) from the groups.csv beside `folds_path`; None when there is none.
    `folds`: the ids' folds when the caller has read `folds_path` already (else it is read here).

    A group must lie in a single fold of `folds_path` (folds are made from groups): a groups.csv that
    splits one across folds belongs to other folds and is refused."""
    path = groups_path(folds_path)
    if not path.is_file():
        return None
    frame = read_id_table(path, GROUPS_FILE_COLUMNS)
    pos = dict(zip(frame["imgId"], _integers(path, frame["group"], "group")))
    absent = [i for i in ids if i not in pos]
    if absent:
        raise DataError(path, f"{len(absent)} imgIds have no group, e.g. {absent[:3]}")
    groups = np.array([pos[i] for i in ids], dtype=np.int64)
    folds = load_folds(folds_path, ids) if folds is None else np.asarray(folds)
    spans = pd.Series(folds).groupby(groups).nunique()
    if len(spans) and spans.max() > 1:
        raise DataError(path, f"group {spans.idxmax()} spans {spans.max()} folds of {folds_path}: "
                              "not the groups these folds were made from (rerun `python -m core.folds`)")
    return groups


@exit_on_input_error
def main(argv=None):
    from core.dataset import PROMPTS_FILE, read_prompts
    from core.targets import targets_for

    ap = argparse.ArgumentParser(description="Make K folds grouped by prompt similarity (imgId,fold).")
    ap.add_argument("--prompts", required=True, help="prompts.csv or a dataset folder holding one")
    ap.add_argument("--targets", required=True, help="targets folder of those prompts (core.targets)")
    ap.add_argument("--out", default=f"work/{FOLDS_FILE}", help="folds.csv to write (default: %(default)s)")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--threshold", type=float, default=0.9,
                    help="join prompts with cosine >= this (default: %(default)s)")
    ap.add_argument("--mode", choices=["exact", "fast"], default="exact")
    ap.add_argument("--nprobe", type=int, default=None,
                    help="fast mode: IVF cells each vector is listed in (default: nlist/64)")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    src = Path(args.prompts)
    if src.is_dir():
        src = src / PROMPTS_FILE
    t0 = time.time()
    frame = read_prompts(src)
    emb = targets_for(args.targets, frame["imgId"].tolist())
    kw = {"nprobe": args.nprobe} if args.mode == "fast" and args.nprobe else {}
    folds, groups = make_folds(frame["imgId"], frame["prompt"], emb, k=args.k, threshold=args.threshold,
                               mode=args.mode, seed=args.seed, progress=True, **kw)
    stats = group_stats(groups)
    meta = save_folds(args.out, frame["imgId"], folds, {
        "k": args.k, "threshold": args.threshold, "mode": args.mode, "seed": args.seed,
        "prompts": str(src), "fold_sizes": np.bincount(folds, minlength=args.k).tolist(),
        "seconds": round(time.time() - t0, 2), "groups_file": GROUPS_FILE,
        **{k: v for k, v in stats.items() if k != "size_histogram"},
    })
    save_groups(groups_path(args.out), frame["imgId"], groups)
    print(f"wrote {args.out} and {groups_path(args.out)}: {len(folds)} rows, "
          f"{stats['n_groups']} groups (largest {stats['largest_group']}), fold sizes {meta['fold_sizes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
