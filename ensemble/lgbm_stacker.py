"""The non-linear stacker: one LightGBM regressor per output dimension.

Features of row i for dimension d: the M models' (L2-normalised) values P_m[i, d], and the
M(M-1)/2 pairwise cosines <P_m[i], P_k[i]> (how much the models agree on this image).
Target: t_i[d]. The 384 predictions of a row are L2-normalised at the end.

Early stopping uses one fold of the training folds (the largest label) as validation; with
`refit` the booster is then retrained on all training folds for the best number of rounds.
"""
import gzip
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import DataError
from core.io import write_bytes
from core.metric import l2_normalize

DEFAULT_PARAMS = {
    "objective": "regression",
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "lambda_l2": 1.0,
    "max_bin": 63,
    "verbose": -1,
    "deterministic": True,
    "force_col_wise": True,
}
MAX_ROUNDS = 100
EARLY_STOPPING = 10


@dataclass
class LgbmStacker:
    models: list  # run names, the order of the M prediction inputs
    boosters: list  # one lightgbm.Booster per dimension
    best_rounds: list = field(default_factory=list)
    seconds: float = 0.0


def pair_indices(n_models):
    return [(m, k) for m in range(n_models) for k in range(m + 1, n_models)]


def pair_cosines(X_rows):
    """(n, M(M-1)/2) cosines between models, from (M, n, D) L2-normalised predictions."""
    pairs = pair_indices(X_rows.shape[0])
    out = np.empty((X_rows.shape[1], len(pairs)), dtype=np.float32)
    for j, (m, k) in enumerate(pairs):
        out[:, j] = np.einsum("nd,nd->n", X_rows[m], X_rows[k])
    return out


def _rows(data, folds):
    return np.concatenate([np.arange(a, b) for a, b in data.segments(folds)])


def _dimension_features(X_rows, d, agreement):
    m = X_rows.shape[0]
    out = np.empty((X_rows.shape[1], m + agreement.shape[1]), dtype=np.float32)
    out[:, :m] = X_rows[:, :, d].T
    out[:, m:] = agreement
    return out


def fit_lgbm_stacker(data, folds, seed=0, num_threads=1, max_rounds=MAX_ROUNDS,
                     early_stopping=EARLY_STOPPING, refit=False, params=None, progress=None):
    """Fit 384 boosters on the rows of `folds` (at least two folds: one is held out for early stopping)."""
    import lightgbm as lgb

    folds = sorted(set(folds))
    if len(folds) < 2:
        raise ValueError("the LightGBM stacker needs at least two training folds (one for early stopping)")
    t0 = time.perf_counter()
    valid_fold = folds[-1]
    fit_folds = folds[:-1]
    p = dict(DEFAULT_PARAMS, **(params or {}), seed=seed, num_threads=num_threads)
    Xf = data.X[:, _rows(data, fit_folds)]
    Xv = data.X[:, _rows(data, [valid_fold])]
    Tf = data.T[_rows(data, fit_folds)]
    Tv = data.T[_rows(data, [valid_fold])]
    agree_f, agree_v = pair_cosines(Xf), pair_cosines(Xv)
    if refit:
        Xa = data.X[:, _rows(data, folds)]
        Ta = data.T[_rows(data, folds)]
        agree_a = pair_cosines(Xa)
    boosters, best = [], []
    dims = range(data.dim)
    if progress is not None:
        dims = progress(dims)
    for d in dims:
        train = lgb.Dataset(_dimension_features(Xf, d, agree_f), label=np.ascontiguousarray(Tf[:, d]),
                            params={"max_bin": p["max_bin"]})
        valid = lgb.Dataset(_dimension_features(Xv, d, agree_v), label=np.ascontiguousarray(Tv[:, d]), reference=train)
        booster = lgb.train(p, train, num_boost_round=max_rounds, valid_sets=[valid],
                            callbacks=[lgb.early_stopping(early_stopping, verbose=False)])
        rounds = max(1, int(booster.best_iteration or max_rounds))
        if refit:
            full = lgb.Dataset(_dimension_features(Xa, d, agree_a), label=np.ascontiguousarray(Ta[:, d]),
                               params={"max_bin": p["max_bin"]})
            booster = lgb.train(p, full, num_boost_round=rounds)
        else:
            booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=rounds))
        boosters.append(booster)
        best.append(rounds)
    return LgbmStacker(list(data.names), boosters, best, time.perf_counter() - t0)


def predict_lgbm_stacker(stacker, X_rows):
    """L2-normalised (n, D) blend from (M, n, D) L2-normalised predictions."""
    X_rows = np.asarray(X_rows, dtype=np.float32)
    if X_rows.shape[0] != len(stacker.models) or X_rows.shape[2] != len(stacker.boosters):
        raise ValueError(f"predictions shape {X_rows.shape} does not fit a stacker of {len(stacker.models)} models "
                         f"x {len(stacker.boosters)} dims")
    agree = pair_cosines(X_rows)
    out = np.empty((X_rows.shape[1], X_rows.shape[2]), dtype=np.float32)
    for d, booster in enumerate(stacker.boosters):
        out[:, d] = booster.predict(_dimension_features(X_rows, d, agree))
    return l2_normalize(out, out=out)


def lgbm_cosine_sum(stacker, data, folds):
    """(sum of cos_i, row count) of the stacker's blend over the rows of `folds`."""
    rows = _rows(data, folds)
    pred = predict_lgbm_stacker(stacker, data.X[:, rows])
    return float(np.einsum("nd,nd->n", pred, data.T[rows]).sum(dtype=np.float64)), len(rows)


def save_lgbm_stacker(path, stacker):
    doc = {"method": "lgbm", "models": list(stacker.models), "best_rounds": list(stacker.best_rounds),
           "boosters": [b.model_to_string() for b in stacker.boosters]}
    write_bytes(path, gzip.compress(json.dumps(doc).encode("utf-8"), mtime=0))
    return Path(path)


def load_lgbm_stacker(path):
    import lightgbm as lgb

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "LightGBM stacker file not found")
    try:
        doc = json.loads(gzip.decompress(path.read_bytes()).decode("utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(path, f"not a LightGBM stacker file: {e}") from e
    boosters = [lgb.Booster(model_str=s) for s in doc["boosters"]]
    return LgbmStacker(doc["models"], boosters, doc.get("best_rounds", []))
