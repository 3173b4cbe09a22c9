"""Run directories -> validated, id-aligned OOF rows for stacking (read from the files on demand).

The OOF rows are ensemble.source.RunFiles over the runs' oof.npy (float32 or float16) and the
targets, in the first run's imgId order; only the test predictions (M x N_test x 384) are loaded.

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
from core.rows import NpyRows, id_order
from core.runs import OOF_FILE, aligned, check_compatible, find_folds, find_targets, load_run, run_names
from core.targets import targets_rows
from ensemble.blend import first_nonfinite_row
from ensemble.source import RunFiles


@dataclass
class StackInputs:
    runs: list
    data: RunFiles  # OOF rows, in the first run's oof_ids order
    test_ids: list
    test: np.ndarray  # (M, N_test, D) float32, L2-normalised rows, in test_ids order
    folds_path: Path
    folds_sha256: str
    targets_path: Path
    notes: list = field(default_factory=list)

    @property
    def names(self):
        return self.data.names


def _stack_test(runs, ids):
    """(M, N_test, D) float32 L2-normalised test predictions in `ids` order (load_run checked them finite)."""
    X = np.empty((len(runs), len(ids), runs[0].test.shape[1]), dtype=np.float32)
    for k, run in enumerate(runs):
        l2_normalize(aligned(run, ids, "test"), out=X[k])
    return X


def _oof_readers(runs, ids):
    """NpyRows of each run's oof.npy in `ids` order (load_run checked every file finite)."""
    return [NpyRows(Path(r.path) / OOF_FILE, id_order(r.oof_ids, ids, Path(r.path) / OOF_FILE)) for r in runs]


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
    T = targets_rows(targets_path, ids)
    bad = first_nonfinite_row(T)
    if bad is not None:
        raise DataError(targets_path, f"NaN or inf in the target of imgId {ids[bad]!r}")
    data = RunFiles(_oof_readers(runs, ids), T, fold_of, names, ids)
    test_ids = list(runs[0].test_ids)
    return StackInputs(runs, data, test_ids, _stack_test(runs, test_ids), folds_path, folds_sha, targets_path,
                       notes)
