"""What every method of the nested procedure needs from the OOF rows, gathered in one chunked pass.

    model   (a (N, M), C (N, M, M)) float64 per row: each model's cosine with the target and the models'
            pairwise cosines; every per-model weight fit and score is a function of these
            (ensemble.objective.model_weight_objective), so the per-model fits never read the rows again
    grams   fold -> (D, M, M) sum over the fold's rows of P[:, i, d] P[:, i, d]': the per-dimension fits'
            preconditioner (ensemble.weight_fits)
    ridge   ensemble.ridge_stacker.FoldSums: per fold X'X, X'T and the sums, from which every ridge fit
            (every training set, every alpha, the refit) is solved
    sample  a StackData of `sample_rows` rows drawn at random (every row when there are no more than that):
            the rows the per-dimension fits run on and on which each hyper-parameter is chosen

The per-dimension objective (mean cosine of the normalised blend) is no function of sums over rows,
and its fits need ~10-30 evaluations each, 76 fits per nested procedure: on 2,000,000 rows read from
disk that is hours. So they run on the in-memory sample (200,000 rows by default: the whole set up to
that size, where the results are exactly those of fitting on every row), shrunk toward per-model
weights fitted on all rows; the inner-CV and K-fold choices of the shrinkage and the ridge alpha are
scored on the sample too. Every nested score is then measured on all rows (ensemble.ledger's
outer pass). docs/stacker.md states what the sample costs.
"""
import time
from dataclasses import dataclass

import numpy as np

from ensemble.data import StackData
from ensemble.ridge_stacker import empty_sums
from ensemble.source import fold_parts

SAMPLE_ROWS = 200_000
SAMPLE_SEED = 0


@dataclass
class FoldStats:
    model: tuple  # (a (N, M), C (N, M, M)), rows in the data's order
    grams: dict  # fold -> (D, M, M) sums
    ridge: object  # FoldSums, or None when ridge is not evaluated
    sample: StackData  # rows sorted by fold
    sample_index: np.ndarray  # sample row j is the data's row sample_index[j]
    seconds: float = 0.0


class _Sample:
    """The rows of a random sample, copied into a StackData (sorted by fold) as the pass goes by."""

    def __init__(self, data, size, seed):
        n = data.n_rows
        self.take = np.arange(n) if n <= size else np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
        folds = data.folds[self.take]
        order = np.argsort(folds, kind="stable")
        self.index = self.take[order]
        self.dest = np.empty(len(order), dtype=np.int64)
        self.dest[order] = np.arange(len(order))
        self.data = data
        self.reuse = isinstance(data, StackData) and n <= size  # already in memory, sorted by fold
        if not self.reuse:
            self.X = np.empty((data.n_models, len(order), data.dim), dtype=np.float32)
            self.T = np.empty((len(order), data.dim), dtype=np.float32)
            self.folds = folds[order]

    def add(self, start, stop, X, T):
        if self.reuse:
            return
        lo, hi = np.searchsorted(self.take, [start, stop])
        if hi > lo:
            local = self.take[lo:hi] - start
            self.X[:, self.dest[lo:hi]] = X[:, local]
            self.T[self.dest[lo:hi]] = T[local]

    def result(self):
        if self.reuse:
            return self.data
        ids = None if self.data.ids is None else [self.data.ids[i] for i in self.index]
        return StackData(self.X, self.T, self.folds, self.data.names, ids)


def collect(data, ridge=True, sample_rows=SAMPLE_ROWS, seed=SAMPLE_SEED, progress=False):
    """FoldStats of a StackData or RunFiles in one pass over its rows (`ridge`: also the ridge sums)."""
    t0 = time.perf_counter()
    n, m, d = data.n_rows, data.n_models, data.dim
    a = np.empty((n, m), dtype=np.float64)
    C = np.empty((n, m, m), dtype=np.float64)
    grams = {f: np.zeros((d, m, m), dtype=np.float64) for f in data.fold_values}
    sums = empty_sums(data) if ridge else None
    sample = _Sample(data, sample_rows, seed)
    bar = _bar(progress, n, "statistics pass")
    for s, e, X, T in data.chunks():
        a[s:e] = np.einsum("mcd,cd->cm", X, T)
        C[s:e] = np.einsum("mcd,kcd->cmk", X, X)
        for fold, rows in fold_parts(data.folds[s:e]):
            Xf = X[:, rows]
            grams[fold] += np.einsum("mcd,kcd->dmk", Xf, Xf)
            if sums is not None:
                sums.add(fold, Xf, T[rows])
        sample.add(s, e, X, T)
        bar.update(e - s)
    bar.close()
    return FoldStats((a, C), grams, sums, sample.result(), sample.index, time.perf_counter() - t0)


def _bar(enabled, total, desc):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="row", unit_scale=True, disable=not enabled)
