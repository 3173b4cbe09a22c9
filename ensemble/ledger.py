"""Fitted blends and the ledger that scores them: no blend is ever scored on (or tuned with) rows it saw.

Every fitted blend carries the set of folds it was trained on (`Fitted.trained_on`);
`Ledger.score` / `score_all` / `predict` refuse a fold in that set, `Ledger.select` refuses to
pick a hyper-parameter for outer fold k with scores that involve k, and every call is recorded.
"""
from dataclasses import dataclass

import numpy as np

from core.metric import l2_normalize
from ensemble.blend import CHUNK_ROWS
from ensemble.objective import cosine_sum
from ensemble.ridge_stacker import predict_ridge, ridge_cosine_sums


class LeakError(AssertionError):
    """A blend was about to be scored on (or tuned with) rows it was trained on."""


@dataclass
class Fitted:
    method: str
    trained_on: frozenset
    weights: np.ndarray = None  # (M, D) float32 for the weight methods (LINEAR_METHODS)
    stacker: object = None  # LgbmStacker for "lgbm", RidgeStacker for "ridge"
    shrinkage: float = None


class Ledger:
    """Scores (and predicts with) fitted blends on folds, refusing any fold the blend saw; keeps a record of each."""

    def __init__(self, data, stats):
        self.data = data
        self.stats = stats
        self.records = []

    def _check(self, fitted, fold, kind, purpose):
        if fold in fitted.trained_on:
            raise LeakError(f"{fitted.method} fitted on folds {sorted(fitted.trained_on)} cannot be scored on fold {fold}")
        self.records.append({"kind": kind, "purpose": purpose, "method": fitted.method, "shrinkage": fitted.shrinkage,
                             "alpha": getattr(fitted.stacker, "alpha", None),
                             "trained_on": sorted(fitted.trained_on), "scored_fold": fold})

    def score(self, fitted, fold, purpose):
        """(sum of cosines, row count) of `fitted` on `fold`."""
        return self.score_all([fitted], fold, purpose)[0]

    def score_all(self, fitted_list, fold, purpose):
        """[(sum of cosines, row count)] of several fits on one fold (ridge fits share one pass over the rows)."""
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
                out.append(linear_cosine_sum(self.data, self.stats, fitted.weights, fold))
        return out

    def predict(self, fitted, fold, purpose):
        """(n_fold, D) L2-normalised predictions of `fitted` for the rows of `fold`."""
        self._check(fitted, fold, "predict", purpose)
        a, b = self.data.bounds[fold]
        X = self.data.X[:, a:b]
        if fitted.method == "lgbm":
            from ensemble.lgbm_stacker import predict_lgbm_stacker

            return predict_lgbm_stacker(fitted.stacker, X)
        if fitted.method == "ridge":
            return predict_ridge(fitted.stacker, X)
        W = np.asarray(fitted.weights, dtype=np.float32)
        out = np.empty((b - a, self.data.dim), dtype=np.float32)
        for s in range(0, b - a, CHUNK_ROWS):
            l2_normalize(np.einsum("mcd,md->cd", X[:, s:s + CHUNK_ROWS], W), out=out[s:s + CHUNK_ROWS])
        return out

    def select(self, outer_fold, used_folds, purpose):
        used = set(used_folds)
        if outer_fold in used:
            raise LeakError(f"{purpose} for outer fold {outer_fold} would use scores involving that fold")
        self.records.append({"kind": "select", "purpose": purpose, "outer_fold": outer_fold, "used_folds": sorted(used)})


def fold_rows(data, folds):
    return np.concatenate([np.arange(a, b) for a, b in data.segments(folds)])


def linear_cosine_sum(data, stats, W, fold):
    """(sum cos, n) of linear weights W on one fold; per-model weights use the cheap row stats."""
    W = np.asarray(W, dtype=np.float32)
    if stats is not None and np.all(W == W[:, :1]):
        a, C = stats
        a_b, e = data.bounds[fold]
        w = W[:, 0].astype(np.float64)
        Cw = C[a_b:e] @ w
        cos = (a[a_b:e] @ w) / np.sqrt(np.maximum(Cw @ w, 1e-24))
        return float(cos.sum()), e - a_b
    return cosine_sum(data, W, [fold])
