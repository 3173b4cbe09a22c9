"""Fitted blends and the ledger that scores them: no blend is ever scored on (or tuned with) rows it saw.

Every fitted blend carries the set of folds it was trained on (`Fitted.trained_on`);
`Ledger.score` / `score_all` / `score_outer` / `predict` / `predict_outer` refuse a fold in that set,
`Ledger.select` refuses to pick a hyper-parameter for outer fold k with scores that involve k, and
every call is recorded.

Two sets of rows: `score` / `score_all` / `predict` use the selection rows (a StackData in memory:
the inner-CV and K-fold scores that choose hyper-parameters), `score_outer` / `predict_outer` use
every row of the source (the nested scores and the nested OOF blend), in one chunked pass over it
for all the blends asked at once. Per-model weights are scored from the per-row model statistics,
without reading rows.
"""
from dataclasses import dataclass

import numpy as np

from core.metric import EPS, l2_normalize
from ensemble.blend import CHUNK_ROWS
from ensemble.objective import cosine_sum
from ensemble.ridge_stacker import predict_ridge, ridge_cosine_sums
from ensemble.source import fold_parts


class LeakError(AssertionError):
    """A blend was about to be scored on (or tuned with) rows it was trained on."""


@dataclass
class Fitted:
    method: str
    trained_on: frozenset
    weights: np.ndarray = None  # (M, D) float32 for the weight methods (LINEAR_METHODS)
    stacker: object = None  # LgbmStacker for "lgbm", RidgeStacker for "ridge"
    shrinkage: float = None

    @property
    def per_model(self):
        """Weights that are the same in every dimension (scored from the per-row model statistics)."""
        return self.weights is not None and bool(np.all(self.weights == self.weights[:, :1]))


class Ledger:
    """Scores (and predicts with) fitted blends on folds, refusing any fold the blend saw; keeps a record of each.

    `data`: the selection rows (StackData); `stats`: ensemble.objective.model_stats-like (a, C) of the source's
    rows, or None; `source`: every row (StackData or ensemble.source.RunFiles; default `data`)."""

    def __init__(self, data, stats, source=None):
        self.data = data
        self.stats = stats
        self.source = data if source is None else source
        self.records = []

    def _check(self, fitted, fold, kind, purpose):
        if fold in fitted.trained_on:
            raise LeakError(f"{fitted.method} fitted on folds {sorted(fitted.trained_on)} "
                            f"cannot be scored on fold {fold}")
        self.records.append({"kind": kind, "purpose": purpose, "method": fitted.method, "shrinkage": fitted.shrinkage,
                             "alpha": getattr(fitted.stacker, "alpha", None),
                             "trained_on": sorted(fitted.trained_on), "scored_fold": fold})

    def score(self, fitted, fold, purpose):
        """(sum of cosines, row count) of `fitted` on the selection rows of `fold`."""
        return self.score_all([fitted], fold, purpose)[0]

    def score_all(self, fitted_list, fold, purpose):
        """[(sum of cosines, row count)] of several fits on the selection rows of one fold (ridge fits share
        one pass over them)."""
        for fitted in fitted_list:
            self._check(fitted, fold, "score", purpose)
        if fitted_list and all(f.method == "ridge" for f in fitted_list):
            return ridge_cosine_sums([f.stacker for f in fitted_list], self.data, [fold])
        out = []
        for fitted in fitted_list:
            if fitted.method == "lgbm":
                from ensemble.lgbm_stacker import lgbm_cosine_sum

                out.append(lgbm_cosine_sum(fitted.stacker, self.data, [fold]))
            elif fitted.method == "ridge":
                out.append(ridge_cosine_sums([fitted.stacker], self.data, [fold])[0])
            else:
                stats = self.stats if self.data is self.source else None  # the row stats are the source's rows
                out.append(linear_cosine_sum(self.data, stats, fitted.weights, fold))
        return out

    def score_outer(self, pairs, purpose):
        """[(sum of cosines, row count)] of each (fitted, fold) on every row of its fold: per-model weights from
        the row statistics, the others in one chunked pass over the source for all of them."""
        for fitted, fold in pairs:
            self._check(fitted, fold, "score", purpose)
        out = [None] * len(pairs)
        by_fold = {}
        for j, (fitted, fold) in enumerate(pairs):
            if self.stats is not None and fitted.per_model:
                out[j] = linear_cosine_sum(self.source, self.stats, fitted.weights, fold)
            else:
                by_fold.setdefault(fold, []).append((j, fitted))
        if by_fold:
            totals, counts = np.zeros(len(pairs)), np.zeros(len(pairs), dtype=np.int64)
            for s, e, X, T in self.source.chunks():
                for fold, rows in fold_parts(self.source.folds[s:e]):
                    for j, fitted in by_fold.get(fold, ()):
                        totals[j] += float(block_cosines(fitted, X[:, rows], T[rows]).sum(dtype=np.float64))
                        counts[j] += len(T[rows])
            for jobs in by_fold.values():
                for j, _ in jobs:
                    out[j] = (float(totals[j]), int(counts[j]))
        return out

    def predict(self, fitted, fold, purpose):
        """(n_fold, D) L2-normalised predictions of `fitted` for the selection rows of `fold`."""
        self._check(fitted, fold, "predict", purpose)
        a, b = self.data.bounds[fold]
        return predict_rows(fitted, self.data.X[:, a:b])

    def predict_outer(self, outer, purpose, sink):
        """Every row of the source predicted by outer[its fold] (L2-normalised), in one chunked pass:
        `sink(start, stop, block)` receives the rows in order."""
        for fold, fitted in outer.items():
            self._check(fitted, fold, "predict", purpose)
        missing = set(self.source.fold_values) - set(outer)
        if missing:
            raise ValueError(f"no fit to predict fold(s) {sorted(missing)}")
        for s, e, X, _ in self.source.chunks():
            block = np.empty((e - s, X.shape[2]), dtype=np.float32)
            for fold, rows in fold_parts(self.source.folds[s:e]):
                block[rows] = predict_rows(outer[fold], X[:, rows])
            sink(s, e, block)

    def select(self, outer_fold, used_folds, purpose):
        used = set(used_folds)
        if outer_fold in used:
            raise LeakError(f"{purpose} for outer fold {outer_fold} would use scores involving that fold")
        self.records.append({"kind": "select", "purpose": purpose, "outer_fold": outer_fold,
                             "used_folds": sorted(used)})


def fold_rows(data, folds):
    return data.rows_of(folds)


def predict_rows(fitted, X):
    """(n, D) L2-normalised predictions of `fitted` from (M, n, D) unit rows."""
    if fitted.method == "lgbm":
        from ensemble.lgbm_stacker import predict_lgbm_stacker

        return predict_lgbm_stacker(fitted.stacker, X)
    if fitted.method == "ridge":
        return predict_ridge(fitted.stacker, X)
    W = np.asarray(fitted.weights, dtype=np.float32)
    out = np.empty((X.shape[1], X.shape[2]), dtype=np.float32)
    for s in range(0, X.shape[1], CHUNK_ROWS):
        l2_normalize(np.einsum("mcd,md->cd", X[:, s:s + CHUNK_ROWS], W), out=out[s:s + CHUNK_ROWS])
    return out


def block_cosines(fitted, X, T):
    """Per-row cosine of `fitted`'s prediction from (M, n, D) unit rows with the (n, D) unit targets."""
    if fitted.method in ("lgbm", "ridge"):
        return np.einsum("cd,cd->c", predict_rows(fitted, X), T)
    B = np.einsum("mcd,md->cd", X, np.asarray(fitted.weights, dtype=np.float32))
    return np.einsum("cd,cd->c", B, T) / np.maximum(np.sqrt(np.einsum("cd,cd->c", B, B)), EPS)


def linear_cosine_sum(data, stats, W, fold):
    """(sum cos, n) of linear weights W on one fold; per-model weights use the cheap row stats."""
    W = np.asarray(W, dtype=np.float32)
    if stats is not None and np.all(W == W[:, :1]):
        a, C = stats
        rows = data.rows_of([fold])
        w = W[:, 0].astype(np.float64)
        Cw = C[rows] @ w
        cos = (a[rows] @ w) / np.sqrt(np.maximum(Cw @ w, 1e-24))
        return float(cos.sum()), len(rows)
    return cosine_sum(data, W, [fold])
