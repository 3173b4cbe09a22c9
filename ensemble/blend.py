"""Apply fitted linear blend weights: numpy only, so offline inference can reuse it as is.

Every linear method (equal, per-model, per-dimension) is stored the same way, as a float32
(M, 384) weight matrix: per-model and equal weights are broadcast over the 384 dimensions.

    blended[i] = l2_normalize( sum_m W[m] * l2_normalize(P_m[i]) )

weights.npz holds `weights` (M, 384) float32, `models` (run names, the order of the rows),
`method`, and `shrinkage` (NaN where the method has none).
"""
import io
from pathlib import Path

import numpy as np

from core import EMBEDDING_DIM
from core.errors import DataError
from core.io import write_bytes
from core.metric import l2_normalize

CHUNK_ROWS = 8192


def first_nonfinite_row(x):
    """Index of the first row of `x` holding NaN or inf, or None."""
    for s in range(0, len(x), CHUNK_ROWS):
        block = np.asarray(x[s:s + CHUNK_ROWS])
        ok = np.isfinite(block).all(axis=tuple(range(1, block.ndim)))
        if not ok.all():
            return s + int(np.flatnonzero(~ok)[0])
    return None


def check_finite(x, what):
    """Raise ValueError naming `what` and the first bad row if `x` holds NaN or inf."""
    bad = first_nonfinite_row(x)
    if bad is not None:
        raise ValueError(f"{what}: NaN or inf in row {bad}")


def as_weight_matrix(weights, n_models, dim=EMBEDDING_DIM):
    """(M,) per-model or (M, dim) per-dimension weights -> float32 (M, dim)."""
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim == 1:
        w = np.repeat(w[:, None], dim, axis=1)
    if w.shape != (n_models, dim):
        raise ValueError(f"weights shape {np.shape(weights)} does not fit {n_models} models x {dim} dims")
    if not np.isfinite(w).all():
        raise ValueError("NaN or inf in the blend weights")
    return w


def blend(predictions, weights, names=None):
    """L2-normalised (N, D) blend of M (N, D) prediction arrays.

    Each model's rows are L2-normalised first, then weighted per dimension and summed, and the
    sum is L2-normalised. `weights` is (M,) or (M, D). `names` (optional) label the models in
    error messages.
    """
    predictions = [np.asarray(p) for p in predictions]
    if not predictions:
        raise ValueError("no predictions to blend")
    names = list(names) if names is not None else [f"model {m}" for m in range(len(predictions))]
    n, dim = predictions[0].shape if predictions[0].ndim == 2 else (None, None)
    for name, p in zip(names, predictions):
        if p.ndim != 2 or p.shape != (n, dim):
            raise ValueError(f"{name}: predictions shape {p.shape}, expected ({n}, {dim}) like {names[0]}")
        check_finite(p, f"{name} predictions")
    w = as_weight_matrix(weights, len(predictions), dim)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, CHUNK_ROWS):
        acc = np.zeros((min(CHUNK_ROWS, n - s), dim), dtype=np.float32)
        for m, p in enumerate(predictions):
            acc += l2_normalize(p[s:s + CHUNK_ROWS]) * w[m]
        l2_normalize(acc, out=out[s:s + CHUNK_ROWS])
    return out


def write_npz(path, **arrays):
    """Write an .npz atomically (no pickled objects); returns the path."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue())
    return Path(path)


def read_npz(path, required, what):
    """{name: array} of an .npz written by `ensemble.fit`; a DataError names the file if it or a key is missing."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"{what} not found; run `python -m ensemble.fit` first")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in required if k not in z.files]
        if missing:
            raise DataError(path, f"not an ensemble {what}: missing {missing}")
        return {k: z[k] for k in z.files}


def save_weights(path, weights, models, method, shrinkage=None):
    """Write weights.npz atomically; returns the path. (M,) weights are stored broadcast to (M, 384)."""
    dim = np.shape(weights)[1] if np.ndim(weights) == 2 else EMBEDDING_DIM
    w = as_weight_matrix(weights, len(models), dim)
    return write_npz(path, weights=w, models=np.asarray([str(m) for m in models]), method=np.asarray(str(method)),
                     shrinkage=np.asarray(np.nan if shrinkage is None else float(shrinkage), dtype=np.float64))


def load_weights(path):
    """Read weights.npz -> dict(weights (M, D) float32, models [str], method str, shrinkage float|None)."""
    path = Path(path)
    z = read_npz(path, ("weights", "models", "method"), "weights file")
    w = z["weights"].astype(np.float32)
    models = [str(m) for m in z["models"]]
    method = str(z["method"])
    shrinkage = float(z["shrinkage"]) if "shrinkage" in z else float("nan")
    if w.ndim != 2 or w.shape[0] != len(models):
        raise DataError(path, f"weights shape {w.shape} does not match {len(models)} model names")
    return {"weights": w, "models": models, "method": method, "shrinkage": None if np.isnan(shrinkage) else shrinkage}


def weights_table(weights, models):
    """The readable form: one row per dimension, one column per model."""
    import pandas as pd

    w = np.asarray(weights, dtype=np.float32)
    frame = pd.DataFrame(w.T, columns=[str(m) for m in models])
    frame.insert(0, "dim", np.arange(w.shape[1]))
    return frame


def apply_weights_file(path, predictions_by_model):
    """Blend {run name: (N, D) predictions} with the weights saved at `path` (rows matched by name)."""
    fitted = load_weights(path)
    missing = [m for m in fitted["models"] if m not in predictions_by_model]
    if missing:
        raise ValueError(f"{path}: weights need predictions of {missing}, got {sorted(predictions_by_model)}")
    preds = [predictions_by_model[m] for m in fitted["models"]]
    return blend(preds, fitted["weights"], names=fitted["models"])
