"""The OOF rows the stacker reads, streamed from the runs' files in chunks.

`RunFiles` and `ensemble.data.StackData` (arrays in memory) offer the same row interface:

    names, ids, n_models, n_rows, dim
    folds         int64 (N,): the fold of each row; fold_values: the sorted distinct folds
    chunks(rows)  -> (start, stop, X float32 (M, c, D), T float32 (c, D)): every row L2-normalised
    rows_of(folds) -> sorted indices of the rows of the given folds; count(folds)

RunFiles' rows are in the first run's oof_ids.csv order; each other run and the targets are read
in that order through core.rows.NpyRows (plain file reads when a file lists the rows in that
order, a short-lived memory map per chunk otherwise), float16 or float32 files alike. Memory stays
at one chunk of every file, whatever N, and no page of a file stays resident.
"""
import numpy as np

from core.metric import l2_normalize

SOURCE_CHUNK_ROWS = 16384  # rows per chunk: M x 16384 x 384 float32 = 100 MB at M = 4


class RunFiles:
    """M runs' OOF predictions and their targets, as rows read on demand (see the module docstring)."""

    def __init__(self, readers, targets, folds, names, ids, chunk_rows=SOURCE_CHUNK_ROWS):
        self.chunk_rows = chunk_rows
        self.readers = list(readers)  # M core.rows.NpyRows, rows in `ids` order
        self.targets = targets  # core.rows.NpyRows, rows in `ids` order
        self.folds = np.asarray(folds, dtype=np.int64)
        self.names = list(names)
        self.ids = list(ids)
        n = len(self.ids)
        if not self.readers or len(self.names) != len(self.readers):
            raise ValueError(f"{len(self.names)} model names for {len(self.readers)} prediction files")
        for r in self.readers + [targets]:
            if len(r) != n or r.dim != self.readers[0].dim:
                raise ValueError(f"{r.path}: {len(r)} rows x {r.dim} dims, expected {n} x {self.readers[0].dim}")
        if self.folds.shape != (n,):
            raise ValueError(f"{self.folds.shape[0]} fold labels for {n} rows")
        self.fold_values = [int(f) for f in np.unique(self.folds)]

    @property
    def n_models(self):
        return len(self.readers)

    @property
    def n_rows(self):
        return len(self.ids)

    @property
    def dim(self):
        return self.readers[0].dim

    def chunks(self, rows=None):
        """Yield (start, stop, X (M, c, D), T (c, D)): float32, unit rows, read from the files."""
        rows = rows or self.chunk_rows
        for s in range(0, self.n_rows, rows):
            e = min(s + rows, self.n_rows)
            X = np.empty((self.n_models, e - s, self.dim), dtype=np.float32)
            for m, reader in enumerate(self.readers):
                l2_normalize(reader[s:e], out=X[m])
            yield s, e, X, l2_normalize(self.targets[s:e])

    def rows_of(self, folds):
        return rows_of(self.folds, folds)

    def count(self, folds):
        return int(np.isin(self.folds, list(folds)).sum())

    def to_memory(self):
        """A StackData of every row (in this order): for tests and small sets only."""
        from ensemble.data import StackData

        X = np.empty((self.n_models, self.n_rows, self.dim), dtype=np.float32)
        T = np.empty((self.n_rows, self.dim), dtype=np.float32)
        for s, e, Xc, Tc in self.chunks():
            X[:, s:e], T[s:e] = Xc, Tc
        order = np.argsort(self.folds, kind="stable")
        return StackData(X[:, order], T[order], self.folds[order], self.names, [self.ids[i] for i in order])


def rows_of(folds_per_row, folds):
    """Sorted indices of the rows whose fold is in `folds`."""
    return np.flatnonzero(np.isin(folds_per_row, sorted(set(folds))))


def fold_parts(folds_per_row):
    """[(fold, rows)] of a chunk's fold labels: rows a slice where the fold's rows are contiguous, else indices."""
    values, first, counts = np.unique(folds_per_row, return_index=True, return_counts=True)
    out = []
    for f, a, c in zip(values, first, counts):
        if np.all(folds_per_row[a:a + c] == f):
            out.append((int(f), slice(int(a), int(a + c))))
        else:
            out.append((int(f), np.flatnonzero(folds_per_row == f)))
    return out
