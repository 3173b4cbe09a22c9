"""Mean cosine of a blend and its analytic gradient, streamed over row blocks.

For weights W (M, D), row i's blend is b_i = sum_m W[m] * P_m[i] and its score
cos_i = <b_i, t_i> / |b_i|  (t_i unit-norm). With g_i = t_i / |b_i| - cos_i * b_i / |b_i|^2,

    d cos_i / d W[m, d] = g_i[d] * P_m[i, d]

so one pass over the rows gives the sum of cosines and the (M, D) gradient. Work is done in
blocks of `CHUNK_ROWS` rows; sums are accumulated in float64.

Per-model weights w (M,) need far less: cos_i = <w, a_i> / sqrt(w' C_i w) with
a_i[m] = <P_m[i], t_i> and C_i[m, k] = <P_m[i], P_k[i]>, computed once (`model_stats`).
"""
import numpy as np

from core.metric import EPS


def _blend_block(Xb, W):
    return np.einsum("mcd,md->cd", Xb, W)


def cosine_sum(data, W, folds):
    """(sum of cos_i, row count) of the per-dimension blend W over the rows of `folds`."""
    W = np.asarray(W, dtype=np.float32)
    total, n = 0.0, 0
    for s, e in data.blocks(folds):
        B = _blend_block(data.X[:, s:e], W)
        Tb = data.T[s:e]
        nb = np.sqrt(np.einsum("cd,cd->c", B, B))
        cos = np.einsum("cd,cd->c", B, Tb) / np.maximum(nb, EPS)
        total += float(cos.sum(dtype=np.float64))
        n += e - s
    return total, n


def cosine_and_gradient(data, W, folds):
    """(mean cos over the rows of `folds`, (M, D) float64 gradient of that mean w.r.t. W)."""
    W = np.asarray(W, dtype=np.float32)
    grad = np.zeros(W.shape, dtype=np.float64)
    total, n = 0.0, 0
    for s, e in data.blocks(folds):
        Xb = data.X[:, s:e]
        Tb = data.T[s:e]
        B = _blend_block(Xb, W)
        nb = np.sqrt(np.einsum("cd,cd->c", B, B))
        inv = 1.0 / np.maximum(nb, EPS)
        cos = np.einsum("cd,cd->c", B, Tb) * inv
        # g = t / |b| - cos * b / |b|^2, built in B's buffer
        B *= (-cos * inv * inv)[:, None]
        B += Tb * inv[:, None]
        grad += np.einsum("cd,mcd->md", B, Xb)
        total += float(cos.sum(dtype=np.float64))
        n += e - s
    if n == 0:
        raise ValueError("no rows to fit on")
    return total / n, grad / n


def per_row_cosines(data, W, folds):
    """float32 cos_i for every row of `folds`, in row order."""
    W = np.asarray(W, dtype=np.float32)
    out = []
    for s, e in data.blocks(folds):
        B = _blend_block(data.X[:, s:e], W)
        nb = np.sqrt(np.einsum("cd,cd->c", B, B))
        out.append(np.einsum("cd,cd->c", B, data.T[s:e]) / np.maximum(nb, EPS))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def model_stats(data):
    """a (N, M) = <P_m[i], t_i> and C (N, M, M) = <P_m[i], P_k[i]>, float64, for all rows."""
    m, n, _ = data.X.shape
    a = np.empty((n, m), dtype=np.float64)
    C = np.empty((n, m, m), dtype=np.float64)
    for s, e in data.blocks(data.fold_values, chunk=4096):
        Xb = data.X[:, s:e]
        a[s:e] = np.einsum("mcd,cd->cm", Xb, data.T[s:e])
        C[s:e] = np.einsum("mcd,kcd->cmk", Xb, Xb)
    return a, C


def model_weight_objective(w, a, C):
    """(mean cos, gradient (M,)) of per-model weights w given rows' stats a (n, M), C (n, M, M)."""
    w = np.asarray(w, dtype=np.float64)
    Cw = C @ w  # (n, M)
    q = np.maximum(Cw @ w, EPS * EPS)  # |b|^2
    s = np.sqrt(q)
    num = a @ w
    cos = num / s
    grad = (a / s[:, None] - (num / (q * s))[:, None] * Cw).mean(axis=0)
    return float(cos.mean()), grad


def dimension_grams(data, folds=None):
    """{fold: (D, M, M) sum over the fold's rows of P[:, i, d] P[:, i, d]'} (the per-dim fit's preconditioner)."""
    m, d = data.n_models, data.dim
    out = {}
    for f in (data.fold_values if folds is None else folds):
        g = np.zeros((d, m, m), dtype=np.float64)
        for s, e in data.blocks([f], chunk=4096):
            Xb = data.X[:, s:e]
            g += np.einsum("mcd,kcd->dmk", Xb, Xb)
        out[f] = g
    return out


def mean_gram(data, folds, grams=None):
    """(D, M, M) mean of P[:, i, d] P[:, i, d]' over the rows of `folds`; `grams` = per-fold sums if known."""
    grams = grams if grams is not None else dimension_grams(data, folds)
    return sum(grams[f] for f in folds) / data.count(folds)
