"""Top-k inner-product search over a bank of L2-normalised rows (faiss), never an N x N matrix.

    flat  exact: faiss's brute-force inner product (what IndexFlatIP.search runs) over bank chunks
          of BANK_CHUNK rows converted to float32 one at a time, the running top-k merged, so
          memory stays at the (float16) bank plus one float32 chunk
    ivf   approximate: faiss IndexIVFScalarQuantizer with fp16 codes (the bank's own fp16 values,
          half of IndexIVFFlat's memory), `nlist` spherical k-means cells, `nprobe` searched per query
    auto  flat up to FLAT_MAX_ROWS bank rows, ivf above (bench/bench_knn.py measured both)

The IVF cells (centroids) are trained once on a sample of all rows and stored in the kNN fold
checkpoint, so inference probes the same cells as the out-of-fold predictions did.
"""
import logging
import os
import sys

import numpy as np

from core.mapped import drop_mapped_pages, take_rows
from core.metric import l2_normalize

INDEX_KINDS = ("auto", "flat", "ivf")
# auto: exact up to this many bank rows. Exact search ran at 18-24 GMAC/s here (bench/bench_knn.py:
# 16,000 queries x 1M rows in 341 s at d = 384, 687 s at d = 1024; 2 shared cores), so at d = 1024
# 16,000 test queries on 250k rows take ~3 min per fold and a 5-fold OOF pass on 250k training rows
# ~45 min: still affordable for exact results. Above, IVF: 1M rows built in ~1-2 min, searched in
# under a minute at >= 0.95 recall (docs/benchmarks.md, bench.bench_knn).
FLAT_MAX_ROWS = 250_000
# ivf: cells searched per query. bench/bench_knn.py, 1M clustered rows, nlist 1,000: recall@20 of the
# exact top-20 0.958 (d = 384) and 0.977 (d = 1024) with 8; 4 fell under 0.95 at d = 384
DEFAULT_NPROBE = 8
BANK_CHUNK = 131_072  # float32 rows converted at a time: 512 MiB at d = 1024
QUERY_CHUNK = 16_384
KMEANS_ITER = 10
KMEANS_POINTS_PER_CELL = 64  # training sample: nlist x this many rows (faiss warns below 39)
_log = logging.getLogger(__name__)


def import_faiss():
    """faiss, its bundled OpenBLAS told the CPU type numpy's newer OpenBLAS detected.

    faiss-cpu's OpenBLAS (0.3.15) does not know recent Xeons and falls back to its generic
    'Prescott' kernels: 3x slower matrix products on this machine (bench/bench_knn.py). The
    variable is read when the library loads, so it is set just for the import.
    """
    if "faiss" in sys.modules or os.environ.get("OPENBLAS_CORETYPE"):
        import faiss

        return faiss
    arch = None
    try:
        import threadpoolctl

        arch = next((i.get("architecture") for i in threadpoolctl.threadpool_info()
                     if i.get("internal_api") == "openblas" and i.get("architecture")), None)
    except Exception:  # threadpoolctl missing or unable to inspect: faiss as it comes
        arch = None
    if arch and arch.lower() != "prescott":
        os.environ["OPENBLAS_CORETYPE"] = arch
        _log.debug("importing faiss with OPENBLAS_CORETYPE=%s (numpy's OpenBLAS)", arch)
    try:
        import faiss
    finally:
        if arch and arch.lower() != "prescott":
            del os.environ["OPENBLAS_CORETYPE"]
    return faiss


def resolve_kind(kind, n_bank):
    if kind not in INDEX_KINDS:
        raise ValueError(f"knn.index must be one of {list(INDEX_KINDS)}, got {kind!r}")
    return kind if kind != "auto" else ("flat" if n_bank <= FLAT_MAX_ROWS else "ivf")


def default_nlist(n_rows):
    """IVF cells: ~sqrt(N) (1,000 rows a cell at N = 1M), so the cell search and the list scans cost alike."""
    return int(max(1, min(65_536, round(np.sqrt(n_rows)))))


def _f32(rows):
    return np.ascontiguousarray(rows, dtype=np.float32)


def train_cells(rows, nlist, seed=0):
    """(nlist, d) float32 unit centroids: spherical k-means on a seeded sample of `rows`."""
    faiss = import_faiss()
    n = len(rows)
    nlist = max(1, min(nlist, n))
    take = min(n, nlist * KMEANS_POINTS_PER_CELL)
    sample = np.sort(np.random.default_rng(seed).choice(n, take, replace=False)) if take < n else np.arange(n)
    km = faiss.Kmeans(rows.shape[1], nlist, niter=KMEANS_ITER, seed=seed, spherical=True, verbose=False,
                      max_points_per_centroid=KMEANS_POINTS_PER_CELL, min_points_per_centroid=1)
    km.train(l2_normalize(take_rows(rows, sample)))  # a memory-mapped bank: the sample lies all over it
    return km.centroids.astype(np.float32)


def _topk_merge(sims, idx, new_sims, new_idx, k):
    if sims is None:
        return new_sims, new_idx
    s, i = np.concatenate([sims, new_sims], axis=1), np.concatenate([idx, new_idx], axis=1)
    keep = np.argpartition(-s, k - 1, axis=1)[:, :k]
    return np.take_along_axis(s, keep, axis=1), np.take_along_axis(i, keep, axis=1)


def reserve_lists(faiss, index, sizes):
    """Allocate inverted list i of an empty IVF `index` for exactly sizes[i] rows (its ids and codes).

    ArrayInvertedLists.resize(i, m) sizes both std::vectors to m rows (one exact allocation, vectors
    start empty); resizing back to 0 keeps that capacity, so the adds fill it without reallocating.
    """
    lists = faiss.downcast_InvertedLists(index.invlists)
    if not isinstance(lists, faiss.ArrayInvertedLists) or index.ntotal:
        raise ValueError("reserve_lists: an empty IVF index with faiss's default (array) inverted lists")
    for i in np.flatnonzero(sizes):
        lists.resize(int(i), int(sizes[i]))
        lists.resize(int(i), 0)


def _add_preassigned(faiss, index, x, cells):
    """Add the unit float32 rows `x` to the IVF `index` in the given cells (int64, one per row), ids continuing."""
    index.add_core(len(x), faiss.swig_ptr(x), None, faiss.swig_ptr(np.ascontiguousarray(cells, dtype=np.int64)))


class BankIndex:
    """Search the unit rows `bank[rows]` (all rows without `rows`): float16 or float32, in memory or
    memory-mapped; only BANK_CHUNK rows at a time are converted to float32 (and re-normalised).

    search() -> (similarities (Q, k) float32, best first; positions in `rows` (Q, k) int64). IVF
    queries whose `nprobe` cells hold fewer than k rows (tiny cells) are searched exactly instead.
    search(allowed=mask): only the positions where the bool mask is true (one index, many folds' exclusions:
    faiss's IDSelectorBitmap for IVF, the allowed rows of each chunk for flat).
    """

    def __init__(self, bank, kind="flat", nprobe=DEFAULT_NPROBE, centroids=None, seed=0, rows=None):
        self.bank, self.rows = bank, None if rows is None else np.asarray(rows)
        self.n = len(bank) if rows is None else len(self.rows)
        self.kind, self.nprobe = resolve_kind(kind, self.n), int(nprobe)
        self.centroids, self._ivf = None, None
        if self.kind == "ivf":
            # train_cells samples (and normalises) the rows it trains on: the bank is never converted whole
            self.centroids = _f32(centroids) if centroids is not None else train_cells(
                self.bank if self.rows is None else self.bank[self.rows], default_nlist(self.n), seed)
            self._ivf = self._build_ivf()

    def _chunk(self, start, stop, allowed=None):
        """Unit float32 rows of positions start..stop (only the allowed ones) and their positions."""
        pos = np.arange(start, min(stop, self.n)) if allowed is None else np.flatnonzero(allowed[start:stop]) + start
        if self.rows is not None:
            rows = self.bank[self.rows[pos]]
        else:
            rows = self.bank[start:stop] if allowed is None else self.bank[pos]
        rows = l2_normalize(rows)  # a float32 copy: a memory-mapped bank's pages can go
        drop_mapped_pages(self.bank)
        return rows, pos

    def _build_ivf(self):
        """The IVF index of every row, its inverted lists allocated at their exact final size.

        faiss grows each list's std::vector as rows arrive, and libstdc++ doubles a vector's capacity, so
        a 5M x 384 fp16 index held ~1.2 GiB of unused capacity beside its 3.6 GiB of codes. Pass 1
        assigns every row its cell (what add() runs first, chunk by chunk: the same cells), pass 2 adds
        the chunks with those cells (add_core) into lists reserved to their counts: the same lists, codes
        and ids as add(), each list allocated once. The cost: the bank is read (and normalised) twice.
        """
        faiss = import_faiss()
        index = self._empty_ivf(faiss)
        cells = np.empty(self.n, dtype=np.int64)  # 40 MB at 5M rows
        # one chunk's float32 rows alive at a time (a temporary per call, not a loop variable held over)
        for s in range(0, self.n, BANK_CHUNK):
            stop = min(s + BANK_CHUNK, self.n)
            cells[s:stop] = index.quantizer.assign(self._chunk(s, stop)[0], 1).ravel()
        reserve_lists(faiss, index, np.bincount(cells, minlength=index.nlist))
        for s in range(0, self.n, BANK_CHUNK):
            stop = min(s + BANK_CHUNK, self.n)
            _add_preassigned(faiss, index, self._chunk(s, stop)[0], cells[s:stop])
        return index

    def _empty_ivf(self, faiss):
        """IVF over the given cells with fp16 codes, no rows yet."""
        d = self.bank.shape[1]
        quantizer = faiss.IndexFlatIP(d)
        quantizer.add(self.centroids)
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, len(self.centroids), faiss.ScalarQuantizer.QT_fp16,
                                              faiss.METRIC_INNER_PRODUCT)
        index.is_trained = True  # cells given; fp16 codes need no training
        return index

    def search(self, queries, k, allowed=None):
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=bool)
            if allowed.shape != (self.n,):
                raise ValueError(f"allowed: a mask of {self.n} positions, got shape {allowed.shape}")
        k = min(int(k), self.n if allowed is None else int(allowed.sum()))
        sims = np.empty((len(queries), k), dtype=np.float32)
        idx = np.empty((len(queries), k), dtype=np.int64)
        if k == 0:
            return sims, idx
        search = self._search_ivf if self._ivf is not None else self._search_flat
        for s in range(0, len(queries), QUERY_CHUNK):
            q = l2_normalize(queries[s:s + QUERY_CHUNK])
            sims[s:s + len(q)], idx[s:s + len(q)] = search(q, k, allowed)
        return sims, idx

    def _search_ivf(self, q, k, allowed=None):
        faiss = import_faiss()
        params = faiss.SearchParametersIVF(nprobe=self.nprobe)
        if allowed is not None:
            bits = np.packbits(allowed, bitorder="little")  # bit i of the bitmap: position i may be returned
            params.sel = selector = faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(bits))
        sims, idx = self._ivf.search(q, k, params=params)
        if allowed is not None:
            del selector, bits  # faiss holds raw pointers: both lived until the search returned
        short = np.flatnonzero((idx < 0).any(axis=1))
        if len(short):
            sims[short], idx[short] = self._search_flat(q[short], k, allowed)
        return sims, idx

    def _search_flat(self, q, k, allowed=None):
        faiss = import_faiss()
        best, arg = None, None
        for s in range(0, self.n, BANK_CHUNK):
            chunk, pos = self._chunk(s, s + BANK_CHUNK, allowed)
            if not len(pos):
                continue
            d, i = faiss.knn(q, chunk, min(k, len(chunk)), metric=faiss.METRIC_INNER_PRODUCT)
            best, arg = _topk_merge(best, arg, d, pos[i], k)
        order = np.argsort(-best, axis=1, kind="stable")
        return np.take_along_axis(best, order, axis=1), np.take_along_axis(arg, order, axis=1)
