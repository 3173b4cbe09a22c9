"""Run directories -> validated, id-aligned, L2-normalised arrays for stacking.

The targets folder and folds.csv are found through each run's metrics.json
(`folds: {path, sha256}`, `targets: {path, ...}`: core.runs.find_folds / find_targets) unless
given explicitly.

Refused with a DataError (message names the runs / files and the first differing ids):
  * runs whose OOF or test imgId sets differ;
  * runs trained on different folds (folds sha256 in metrics.json), or a folds file whose
    content is not the one the runs were trained on: stacking their OOF rows would leak;
  * runs pointing to different targets;
  * NaN / inf in any prediction or target.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import DataError
from core.folds import load_folds
from core.metric import l2_normalize
from core.runs import OOF_FILE, TEST_FILE, aligned, check_compatible, find_folds, find_targets, load_run, run_names
from core.targets import targets_for
from ensemble.blend import first_nonfinite_row
from ensemble.data import StackData, fold_order


@dataclass
class StackInputs:
    runs: list
    data: StackData  # OOF rows sorted by fold
    test_ids: list
    test: np.ndarray  # (M, N_test, D) float32, L2-normalised rows, in test_ids order
    folds_path: Path
    folds_sha256: str
    targets_path: Path
    notes: list = field(default_factory=list)

    @property
    def names(self):
        return self.data.names


def _stack(runs, names, ids, which):
    m, n = len(runs), len(ids)
    dim = (runs[0].oof if which == "oof" else runs[0].test).shape[1]
    X = np.empty((m, n, dim), dtype=np.float32)
    for k, run in enumerate(runs):
        src = aligned(run, ids, which)
        bad = first_nonfinite_row(src)
        if bad is not None:
            raise DataError(Path(run.path) / (OOF_FILE if which == "oof" else TEST_FILE),
                            f"NaN or inf in run {names[k]}'s prediction for imgId {ids[bad]!r}")
        l2_normalize(src, out=X[k])
        del src
    return X


def load_inputs(run_dirs, targets=None, folds=None, verify_hashes=True):
    """Load, validate and align the runs; returns StackInputs (OOF rows sorted by fold)."""
    run_dirs = [Path(p) for p in run_dirs]
    if not run_dirs:
        raise ValueError("no runs given (--runs RUN_DIR ...)")
    seen = {}
    for p in run_dirs:
        key = p.resolve()
        if key in seen:
            raise DataError(p, f"run directory given twice (also as {seen[key]})")
        seen[key] = p
    runs = [load_run(p, verify_hashes=verify_hashes) for p in run_dirs]
    check_compatible(runs)
    names = run_names(runs)
    folds_path, folds_sha, notes = find_folds(runs, folds)
    targets_path = find_targets(runs, targets)

    ids = list(runs[0].oof_ids)
    fold_of = load_folds(folds_path, ids)
    order = fold_order(fold_of)
    ids = [ids[i] for i in order]
    fold_of = fold_of[order]

    T = targets_for(targets_path, ids)
    bad = first_nonfinite_row(T)
    if bad is not None:
        raise DataError(targets_path, f"NaN or inf in the target of imgId {ids[bad]!r}")
    T = l2_normalize(T, out=T)
    X = _stack(runs, names, ids, "oof")
    test_ids = list(runs[0].test_ids)
    X_test = _stack(runs, names, test_ids, "test")
    data = StackData(X, T, fold_of, names, ids)
    return StackInputs(runs, data, test_ids, X_test, folds_path, folds_sha, targets_path, notes)
