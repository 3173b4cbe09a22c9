"""Fit linear blend weights on OOF rows by maximising the mean cosine of the normalised blend.

    fit_equal_weights(M)                              -> (M,) 1/M each
    fit_model_weights(stats, rows, nonneg)            -> (M,) one weight per model, summing to 1
    fit_dimension_weights_on(data, folds, prior, ...) -> (M, D) per-dimension weights
    fit_dimension_weights(preds, targets, prior, ...) -> the same on plain arrays

Per-dimension objective (maximised), with W0 = the per-model weights broadcast to (M, D):

    mean_i cos(sum_m W[m] * P_m[i], t_i)  -  shrinkage / D * sum_{m,d} (W[m, d] - W0[m, d])^2

The penalty is divided by D so that `shrinkage` is on the scale of one dimension's share of
the mean cosine; it pulls each dimension's weights toward the per-model weights.
Solved with scipy's L-BFGS-B on the analytic gradient (bounds W >= 0 when `nonneg`).
"""
import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ensemble.data import StackData
from ensemble.objective import cosine_and_gradient, mean_gram, model_weight_objective

# Stop when an iteration improves the objective by less than this (relative): a mean-cosine
# change of 1e-7 is far below anything the nested CV can resolve, and about the float32 noise
# of the objective, below which line searches only burn passes over the data.
FTOL = 1e-7
GTOL = 1e-7
MAX_ITER = 200
MAX_LINE_SEARCH = 8


@dataclass
class FitInfo:
    objective: float
    mean_cosine: float
    iterations: int
    evaluations: int
    seconds: float
    converged: bool
    message: str


def fit_equal_weights(n_models):
    return np.full(n_models, 1.0 / n_models, dtype=np.float32)


def _normalize_model_weights(w):
    total = float(np.sum(w))
    if total <= 1e-12:  # only possible without non-negativity: keep the direction, fix the scale
        total = float(np.sum(np.abs(w))) or 1.0
    return (np.asarray(w, dtype=np.float64) / total).astype(np.float32)


def fit_model_weights(stats, rows=None, nonneg=True, init=None):
    """One weight per model maximising mean cosine on `rows` (index array; None = all).

    `stats` = (a, C) from ensemble.objective.model_stats. Returns (M,) float32 summing to 1.
    """
    a, C = stats
    if rows is not None:
        a, C = a[rows], C[rows]
    m = a.shape[1]
    x0 = np.full(m, 1.0 / m) if init is None else np.asarray(init, dtype=np.float64)

    def fun(w):
        val, grad = model_weight_objective(w, a, C)
        return -val, -grad

    bounds = [(0.0, None)] * m if nonneg else None
    res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": MAX_ITER, "ftol": 1e-12, "gtol": 1e-9})
    return _normalize_model_weights(res.x)


def fit_dimension_weights_on(data, folds, prior_weights, shrinkage, nonneg=False, init=None,
                             max_iter=MAX_ITER, ftol=FTOL, gtol=GTOL, grams=None, precondition=True):
    """Per-dimension weights (M, D) fitted on the rows of `folds` of a StackData.

    `prior_weights` (M,) or (M, D) is the shrinkage target; `init` (M, D) a warm start
    (default: the prior). `grams` (D, M, M): the mean over the fit's rows of P[:, i, d] P[:, i, d]'
    (computed here when not given) whitens each dimension's block of the Hessian.
    With `nonneg`, the whitened problem is solved first; only if that leaves negative weights is
    the bounded problem solved, from the clipped solution (bounds do not survive whitening).
    Returns (W float32 (M, D), FitInfo).
    """
    m, d = data.n_models, data.dim
    prior = np.asarray(prior_weights, dtype=np.float64)
    W0 = np.broadcast_to(prior[:, None] if prior.ndim == 1 else prior, (m, d)).astype(np.float64)
    x0 = (W0 if init is None else np.asarray(init, dtype=np.float64)).reshape(m, d).copy()
    lam = float(shrinkage) / d
    t0 = time.perf_counter()
    calls = [0]
    options = {"maxiter": max_iter, "ftol": ftol, "gtol": gtol, "maxcor": 20, "maxls": MAX_LINE_SEARCH}

    def fun(x):
        calls[0] += 1
        W = x.reshape(m, d)
        cos, grad = cosine_and_gradient(data, W, folds)
        diff = W - W0
        return -cos + lam * float(np.sum(diff * diff)), (-grad + 2.0 * lam * diff).ravel()

    iterations, res = 0, None
    W = x0
    if precondition:
        if grams is None:
            grams = mean_gram(data, folds)
        # z_d = L_d' (W[:, d] - W0[:, d]) with L_d L_d' = G_d + 2 lam I
        L = np.linalg.cholesky(grams + (2.0 * lam + 1e-9) * np.eye(m)[None])  # (d, m, m)
        Lt = np.transpose(L, (0, 2, 1))

        def to_w(z):
            return W0 + np.linalg.solve(Lt, z.reshape(d, m)[:, :, None])[:, :, 0].T

        def fun_z(z):
            value, g = fun(to_w(z).ravel())
            return value, np.linalg.solve(L, g.reshape(m, d).T[:, :, None])[:, :, 0].ravel()

        z0 = np.einsum("dkm,kd->dm", L, x0 - W0).ravel()
        res = minimize(fun_z, z0, jac=True, method="L-BFGS-B", options=options)
        W = to_w(res.x)
        iterations += int(res.nit)
    if not precondition or (nonneg and W.min() < 0):
        bounds = [(0.0, None)] * (m * d) if nonneg else None
        start = np.maximum(W, 0.0) if nonneg else W
        res = minimize(fun, start.ravel(), jac=True, method="L-BFGS-B", bounds=bounds, options=options)
        W = res.x.reshape(m, d)
        iterations += int(res.nit)
    diff = W - W0
    info = FitInfo(objective=float(-res.fun), mean_cosine=float(-res.fun + lam * np.sum(diff * diff)),
                   iterations=iterations, evaluations=calls[0], seconds=time.perf_counter() - t0,
                   converged=bool(res.success), message=str(res.message))
    return W.astype(np.float32), info


def fit_dimension_weights(preds, targets, prior_weights, shrinkage, nonneg=False, **kw):
    """Per-dimension weights on plain arrays: `preds` M arrays (N, D) (L2-normalised rows),
    `targets` (N, D) unit rows. Returns (W float32 (M, D), FitInfo)."""
    X = np.stack([np.asarray(p, dtype=np.float32) for p in preds])
    data = StackData(X, np.asarray(targets, dtype=np.float32), np.zeros(X.shape[1], dtype=np.int64),
                     [f"model {i}" for i in range(len(preds))])
    return fit_dimension_weights_on(data, [0], prior_weights, shrinkage, nonneg=nonneg, **kw)
