"""The full linear stacker: multi-output ridge regression on the concatenated model predictions.

Features of row i: x_i = [P_1[i], ..., P_M[i]], every model's L2-normalised prediction, M*D values;
target: t_i (unit). Coefficients B (D, M*D) and intercept b (D,) minimise

    sum_i |t_i - B x_i - b|^2 + alpha |B|^2        (scikit-learn's Ridge(alpha), fit_intercept=True)

so every output dimension may draw on every dimension of every model (the per-dimension blend only
on its own dimension). The prediction B x_i + b is L2-normalised.

Fitting streams once over the rows and keeps per-fold sums (X'X, X'T, sum x, sum t, n): the
centred Gram matrix of any set of folds is a sum of those, so each fit of the nested CV is one
(M*D)^2 Cholesky solve per alpha and never reads the rows again. The sums are those of shifted rows
(FoldSums), so that each chunk's product can be float32. (Sets with fewer rows than
features keep their rows and solve the equivalent n x n dual system instead.) Applying is numpy only
(ridge.npz: `coef` (D, M*D), `intercept` (D,), `models`, `alpha`), so offline inference reuses it.
"""
import time
from dataclasses import dataclass, field

import numpy as np

from core.errors import DataError
from core.metric import l2_normalize
from ensemble.blend import CHUNK_ROWS, check_finite, read_npz, write_npz

GRAM_CHUNK_ROWS = 4096


@dataclass
class RidgeStacker:
    models: list  # run names: the order of the M feature blocks
    coef: np.ndarray  # float32 (D, M*D), scikit-learn's coef_
    intercept: np.ndarray  # float32 (D,), scikit-learn's intercept_
    alpha: float


@dataclass
class FoldSums:
    """Per-fold sums over rows of the shifted features z - shift_x and targets t - shift_t: xx (F, F),
    xt (F, D), x (F,), t (D,), n; float64; F = M*D. Each chunk's products are float32 (BLAS syrk / gemm at twice
    float64's speed); the shift (the first chunk's mean row) keeps them free of cancellation, and the fits
    undo it. `rows` (fold -> [(features, targets)], shifted) is kept only for sets of fewer rows than features."""

    xx: dict = field(default_factory=dict)
    xt: dict = field(default_factory=dict)
    x: dict = field(default_factory=dict)
    t: dict = field(default_factory=dict)
    n: dict = field(default_factory=dict)
    rows: dict = None
    shift_x: np.ndarray = None
    shift_t: np.ndarray = None
    seconds: float = 0.0

    def add(self, fold, X_rows, T_rows):
        """Add rows of `fold`: X_rows (M, c, D) and T_rows (c, D), L2-normalised."""
        Z = features(np.asarray(X_rows, dtype=np.float32))
        T = np.asarray(T_rows, dtype=np.float32)
        if self.shift_x is None:
            self.shift_x, self.shift_t = Z.mean(axis=0, dtype=np.float64), T.mean(axis=0, dtype=np.float64)
        Z = Z - self.shift_x.astype(np.float32)  # not in place: Z may be a view of the caller's rows
        T = T - self.shift_t.astype(np.float32)
        if fold not in self.n:
            f, d = Z.shape[1], T.shape[1]
            self.xx[fold], self.xt[fold] = np.zeros((f, f)), np.zeros((f, d))
            self.x[fold], self.t[fold] = np.zeros(f), np.zeros(d)
            self.n[fold] = 0
        self.xx[fold] += Z.T @ Z
        self.xt[fold] += Z.T @ T
        self.x[fold] += Z.sum(axis=0, dtype=np.float64)
        self.t[fold] += T.sum(axis=0, dtype=np.float64)
        self.n[fold] += len(Z)
        if self.rows is not None:
            self.rows.setdefault(fold, []).append((Z.astype(np.float64), T.astype(np.float64)))


def features(X_rows):
    """(M, n, D) predictions -> (n, M*D) rows [P_1[i], ..., P_M[i]]."""
    m, n, d = X_rows.shape
    return np.ascontiguousarray(np.transpose(X_rows, (1, 0, 2))).reshape(n, m * d)


def empty_sums(data):
    """FoldSums to fill with `add`; rows are kept when the data has fewer rows than features."""
    return FoldSums(rows={} if data.n_rows < data.n_models * data.dim else None)


def fold_sums(data, chunk=GRAM_CHUNK_ROWS):
    """One pass over a StackData's or RunFiles' rows: FoldSums per fold."""
    from ensemble.source import fold_parts

    t0 = time.perf_counter()
    sums = empty_sums(data)
    for s, e, X, T in data.chunks(chunk):
        for fold, rows in fold_parts(data.folds[s:e]):
            sums.add(fold, X[:, rows], T[rows])
    sums.seconds = time.perf_counter() - t0
    return sums


def fit_ridge(sums, folds, alphas, models):
    """RidgeStacker per alpha, fitted on the rows of `folds` from their FoldSums (scikit-learn's
    Ridge(alpha, fit_intercept=True) solution: centre X and T, solve (Xc'Xc + alpha I) W = Xc'Tc)."""
    folds = sorted(folds)
    n = sum(sums.n[k] for k in folds)
    if n == 0:
        raise ValueError("no rows to fit the ridge stacker on")
    mx = sum(sums.x[k] for k in folds) / n  # means of the shifted rows
    mt = sum(sums.t[k] for k in folds) / n
    for alpha in alphas:
        if not alpha > 0:
            raise ValueError(f"ridge alpha must be > 0, got {alpha}")

    def stacker(alpha, W):  # the intercept of the unshifted rows
        b = (mt + sums.shift_t) - (mx + sums.shift_x) @ W
        return RidgeStacker(list(models), W.T.astype(np.float32), b.astype(np.float32), float(alpha))

    if sums.rows is not None and n < len(mx):
        return [stacker(alpha, W) for alpha, W in zip(alphas, _dual_solutions(sums, folds, mx, mt, alphas))]
    gram = sum(sums.xx[k] for k in folds) - n * np.outer(mx, mx)
    cross = sum(sums.xt[k] for k in folds) - n * np.outer(mx, mt)
    from scipy.linalg import LinAlgError, cho_factor, cho_solve  # fitting only: applying stays numpy-only

    out = []
    for alpha in alphas:
        a = gram.copy()
        a[np.diag_indices_from(a)] += alpha
        try:  # Cholesky: half the work of a general solve
            W = cho_solve(cho_factor(a, overwrite_a=True, check_finite=False), cross, check_finite=False)  # (F, D)
        except LinAlgError:  # not numerically positive definite (a tiny alpha): LU
            a = gram.copy()
            a[np.diag_indices_from(a)] += alpha
            W = np.linalg.solve(a, cross)
        out.append(stacker(alpha, W))
    return out


def _dual_solutions(sums, folds, mx, mt, alphas):
    """Fewer rows than features (tiny sets): W = Xc' (Xc Xc' + alpha I)^-1 Tc, the same solution via an
    n x n system instead of an F x F one (scikit-learn switches the same way)."""
    Z = np.concatenate([z for k in folds for z, _ in sums.rows[k]]) - mx
    T = np.concatenate([t for k in folds for _, t in sums.rows[k]]) - mt
    kernel = Z @ Z.T
    eye = np.eye(len(Z))
    return [Z.T @ np.linalg.solve(kernel + alpha * eye, T) for alpha in alphas]


def _raw_predictions(coef, intercept, Z):
    return Z @ coef.T + intercept


def predict_ridge(stacker, X_rows):
    """L2-normalised (n, D) predictions from (M, n, D) L2-normalised model predictions."""
    m, n, d = X_rows.shape
    if m != len(stacker.models) or m * d != stacker.coef.shape[1]:
        raise ValueError(f"predictions shape {X_rows.shape} do not fit a ridge stacker of {len(stacker.models)} "
                         f"models x {stacker.coef.shape[1] // max(len(stacker.models), 1)} dims")
    out = np.empty((n, stacker.coef.shape[0]), dtype=np.float32)
    for s in range(0, n, CHUNK_ROWS):
        Z = features(np.asarray(X_rows[:, s:s + CHUNK_ROWS], dtype=np.float32))
        l2_normalize(_raw_predictions(stacker.coef, stacker.intercept, Z), out=out[s:s + CHUNK_ROWS])
    return out


def ridge_cosine_sums(stackers, data, folds):
    """[(sum of cos_i, row count)] of each stacker over the rows of `folds`, in one pass over the rows."""
    d = data.dim
    coef = np.concatenate([st.coef for st in stackers])  # (G*D, F): every alpha in one product
    intercept = np.concatenate([st.intercept for st in stackers])
    totals, n = np.zeros(len(stackers)), 0
    for s, e in data.blocks(folds):
        P = _raw_predictions(coef, intercept, features(data.X[:, s:e])).reshape(e - s, len(stackers), d)
        T = data.T[s:e]
        cos = np.einsum("cgd,cd->cg", P, T) / np.maximum(np.sqrt(np.einsum("cgd,cgd->cg", P, P)), 1e-12)
        totals += cos.sum(axis=0, dtype=np.float64)
        n += e - s
    return [(float(x), n) for x in totals]


def save_ridge(path, stacker):
    """Write ridge.npz atomically; returns the path."""
    return write_npz(path, coef=np.asarray(stacker.coef, dtype=np.float32),
                     intercept=np.asarray(stacker.intercept, dtype=np.float32),
                     models=np.asarray([str(m) for m in stacker.models]), alpha=np.asarray(float(stacker.alpha)),
                     method=np.asarray("ridge"))


def load_ridge(path):
    z = read_npz(path, ("coef", "intercept", "models", "alpha"), "ridge stacker file")
    coef, intercept = z["coef"].astype(np.float32), z["intercept"].astype(np.float32)
    models, alpha = [str(m) for m in z["models"]], float(z["alpha"])
    if (coef.ndim != 2 or not models or coef.shape[1] != len(models) * coef.shape[0]
            or intercept.shape != coef.shape[:1]):
        raise DataError(path, f"coef {coef.shape} / intercept {intercept.shape} do not fit {len(models)} models")
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise DataError(path, "NaN or inf in the ridge coefficients")
    return RidgeStacker(models, coef, intercept, alpha)


def apply_ridge_file(path, predictions_by_model):
    """Blend {run name: (N, D) predictions} with the ridge stacker saved at `path` (models matched by name)."""
    stacker = load_ridge(path)
    missing = [m for m in stacker.models if m not in predictions_by_model]
    if missing:
        raise ValueError(f"{path}: the ridge stacker needs predictions of {missing}, "
                         f"got {sorted(predictions_by_model)}")
    preds = [np.asarray(predictions_by_model[m]) for m in stacker.models]
    d = stacker.coef.shape[0]
    for name, p in zip(stacker.models, preds):
        if p.ndim != 2 or p.shape != (len(preds[0]), d):
            raise ValueError(f"{name}: predictions shape {p.shape}, expected ({len(preds[0])}, {d})")
        check_finite(p, f"{name} predictions")
    n = len(preds[0])
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, CHUNK_ROWS):
        X = np.stack([l2_normalize(p[s:s + CHUNK_ROWS]) for p in preds])
        out[s:s + CHUNK_ROWS] = predict_ridge(stacker, X)
    return out
