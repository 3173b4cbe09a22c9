"""OOF predictions and targets laid out for stacking.

    X      float32 (M, N, D): model m's L2-normalised OOF prediction of row i
    T      float32 (N, D):    the L2-normalised target of row i
    folds  int (N,):          the row's fold, ascending: every fold is one contiguous row range

Because each fold is contiguous, "the rows of folds {0, 2, 3}" is a short list of (start, stop)
ranges: fitting and scoring stream over those ranges in chunks without copying rows.

It offers the row interface of ensemble.source.RunFiles (`chunks`, `rows_of`, `folds`, ...), so the
nested procedure runs on either: RunFiles streams the runs' files, a StackData holds rows in memory
(the per-dimension fits' rows, tests, the LightGBM stacker).
"""
from dataclasses import dataclass, field

import numpy as np

CHUNK_ROWS = 1024  # rows per streamed block: (M + 3) x 1024 x 384 float32 stays in cache-sized pieces


@dataclass
class StackData:
    X: np.ndarray
    T: np.ndarray
    folds: np.ndarray
    names: list
    ids: list = field(default=None)

    def __post_init__(self):
        self.folds = np.asarray(self.folds, dtype=np.int64)
        if self.X.ndim != 3:
            raise ValueError(f"X must be (models, rows, dims), got shape {self.X.shape}")
        m, n, d = self.X.shape
        if self.T.shape != (n, d):
            raise ValueError(f"targets shape {self.T.shape} does not match predictions ({n}, {d})")
        if self.folds.shape != (n,):
            raise ValueError(f"{self.folds.shape[0]} fold labels for {n} rows")
        if len(self.names) != m:
            raise ValueError(f"{len(self.names)} model names for {m} models")
        if n and np.any(np.diff(self.folds) < 0):
            raise ValueError("rows must be sorted by fold (see ensemble.inputs.fold_order)")
        self.fold_values = [int(f) for f in np.unique(self.folds)]
        starts = np.searchsorted(self.folds, self.fold_values, side="left")
        stops = np.searchsorted(self.folds, self.fold_values, side="right")
        self.bounds = {f: (int(a), int(b)) for f, a, b in zip(self.fold_values, starts, stops)}

    @property
    def n_models(self):
        return self.X.shape[0]

    @property
    def n_rows(self):
        return self.X.shape[1]

    @property
    def dim(self):
        return self.X.shape[2]

    def segments(self, folds):
        """(start, stop) row ranges covering exactly the given folds, adjacent ranges merged."""
        unknown = set(folds) - set(self.fold_values)
        if unknown:
            raise ValueError(f"unknown fold(s) {sorted(unknown)}; folds are {self.fold_values}")
        out = []
        for f in sorted(set(folds)):
            a, b = self.bounds[f]
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
        return out

    def count(self, folds):
        return sum(b - a for a, b in self.segments(folds))

    def chunks(self, rows=CHUNK_ROWS * 16):
        """Yield (start, stop, X (M, c, D), T (c, D)) over all rows, in order (views, not copies)."""
        for s in range(0, self.n_rows, rows):
            e = min(s + rows, self.n_rows)
            yield s, e, self.X[:, s:e], self.T[s:e]

    def rows_of(self, folds):
        """Sorted indices of the rows of the given folds."""
        segments = self.segments(folds)
        return np.concatenate([np.arange(a, b) for a, b in segments]) if segments else np.zeros(0, dtype=np.int64)

    def blocks(self, folds, chunk=CHUNK_ROWS):
        """Yield (start, stop) blocks of at most `chunk` rows over the given folds."""
        for a, b in self.segments(folds):
            for s in range(a, b, chunk):
                yield s, min(s + chunk, b)


def fold_order(folds):
    """Row permutation that sorts rows by fold (stable: original order within a fold)."""
    return np.argsort(np.asarray(folds), kind="stable")
