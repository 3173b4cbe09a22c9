"""Apply a fitted ensemble folder (what `python -m ensemble.fit` wrote) to new predictions.

ensemble.json names the chosen method, the run names in input order, and the file to load:
weights.npz for the weight methods (numpy only, `ensemble.blend`), ridge.npz for the ridge
stacker (numpy only, `ensemble.ridge_stacker`), lgbm_stacker.json.gz for the LightGBM stacker
(needs lightgbm).

The folder's file names are defined here, once (its submission.csv is core.submission's SUBMISSION_FILE).
"""
from pathlib import Path

import numpy as np

from core.errors import DataError
from core.io import read_json
from core.metric import l2_normalize
from ensemble.blend import apply_weights_file

ENSEMBLE_MANIFEST = "ensemble.json"
WEIGHTS_FILE = "weights.npz"
WEIGHTS_CSV = "weights.csv"
LGBM_FILE = "lgbm_stacker.json.gz"
RIDGE_FILE = "ridge.npz"
SCORES_FILE = "scores.json"
# the chosen blend's nested-CV OOF predictions: row i from the blend fitted without row i's fold
OOF_BLEND_FILE = "oof_blend.npy"  # float32 (N, D), unit rows
OOF_BLEND_IDS_FILE = "oof_blend_ids.csv"  # imgId, the row order of oof_blend.npy


def read_manifest(out_dir):
    path = Path(out_dir) / ENSEMBLE_MANIFEST
    if not path.is_file():
        raise DataError(path, "missing: not a fitted ensemble folder (run `python -m ensemble.fit`)")
    return read_json(path)


def apply_ensemble(out_dir, predictions_by_model):
    """L2-normalised (N, D) blend of {run name: (N, D) predictions} with the fitted ensemble in `out_dir`."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    if manifest["method"] == "ridge":
        from ensemble.ridge_stacker import apply_ridge_file

        return apply_ridge_file(out_dir / manifest["file"], predictions_by_model)
    if manifest["method"] != "lgbm":
        return apply_weights_file(out_dir / manifest["file"], predictions_by_model)
    from ensemble.lgbm_stacker import load_lgbm_stacker, predict_lgbm_stacker

    stacker = load_lgbm_stacker(out_dir / manifest["file"])
    missing = [m for m in stacker.models if m not in predictions_by_model]
    if missing:
        raise ValueError(f"{out_dir}: the stacker needs predictions of {missing}, got {sorted(predictions_by_model)}")
    X = np.stack([l2_normalize(predictions_by_model[m]) for m in stacker.models])
    return predict_lgbm_stacker(stacker, X)
