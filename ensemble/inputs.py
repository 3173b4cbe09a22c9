"""Run directories -> validated, id-aligned, L2-normalised arrays for stacking.

The targets folder and folds.csv are found through each run's metrics.json
(`folds: {path, sha256}`, `targets: {path, ...}`) unless given explicitly. A relative path
there is tried against the working directory first, then against the run directory.

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
from core.io import read_json, sha256_file
from core.targets import META_FILE, targets_for
from ensemble.blend import first_nonfinite_row, normalize_rows
from ensemble.data import StackData, fold_order
from oof.runs import METRICS_FILE, OOF_FILE, TEST_FILE, aligned, check_compatible, load_run


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


def resolve_recorded_path(recorded, run):
    """A path from a run's metrics.json: absolute, else relative to the cwd, else to the run dir."""
    p = Path(recorded)
    if p.is_absolute():
        return p
    for base in (Path.cwd(), Path(run.path)):
        if (base / p).exists():
            return base / p
    return p


def _recorded(run, key):
    entry = run.metrics.get(key)
    if isinstance(entry, dict):
        return entry.get("path")
    if isinstance(entry, str):
        return entry
    return None


def run_names(runs):
    """Unique, readable names: the directory name, or parent/name where two runs share one."""
    names = [r.name for r in runs]
    if len(set(names)) == len(names):
        return names
    names = [f"{Path(r.path).parent.name}/{r.name}" for r in runs]
    if len(set(names)) != len(names):
        names = [str(r.path) for r in runs]
    return names


def find_folds(runs, folds=None):
    """(path, sha256) of the folds file, checked against every run's recorded folds hash."""
    recorded = {r.name: r.folds_sha256 for r in runs}
    notes = []
    if folds is not None:
        path = Path(folds)
        if not path.is_file():
            raise DataError(path, "folds file not found")
    else:
        raw = _recorded(runs[0], "folds")
        if raw is None:
            raise DataError(Path(runs[0].path) / METRICS_FILE, "records no folds path (metrics.json: folds.path); pass --folds")
        path = resolve_recorded_path(raw, runs[0])
        if not path.is_file():
            raise DataError(path, f"folds file recorded by run {runs[0].name} not found; pass --folds")
    sha = sha256_file(path)
    for run in runs:
        want = recorded[run.name]
        if want is None:
            notes.append(f"run {run.name} records no folds hash: cannot verify it was trained on {path}")
        elif want != sha:
            raise DataError(
                path,
                f"content (sha256 {sha[:12]}...) is not the folds run {run.name} was trained on "
                f"(sha256 {want[:12]}... in {Path(run.path) / METRICS_FILE}); stacking on other folds leaks",
            )
    return path, sha, notes


def find_targets(runs, targets=None):
    if targets is not None:
        return Path(targets)
    found = {}
    for run in runs:
        raw = _recorded(run, "targets")
        if raw is None:
            raise DataError(Path(run.path) / METRICS_FILE, "records no targets path (metrics.json: targets.path); pass --targets")
        found[run.name] = resolve_recorded_path(raw, run)
    paths = {p.resolve() for p in found.values()}
    if len(paths) > 1:
        keys = {}
        for name, p in found.items():
            meta = p / META_FILE
            keys[name] = read_json(meta).get("key") if meta.is_file() else None
        if len(set(keys.values())) > 1 or None in keys.values():
            detail = "; ".join(f"{n}: {found[n]}" for n in found)
            raise DataError(found[runs[0].name], f"runs were trained on different targets ({detail}); pass --targets if they are the same")
    return found[runs[0].name]


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
        normalize_rows(src, out=X[k])
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
    T = normalize_rows(T, out=T)
    X = _stack(runs, names, ids, "oof")
    test_ids = list(runs[0].test_ids)
    X_test = _stack(runs, names, test_ids, "test")
    data = StackData(X, T, fold_of, names, ids)
    return StackInputs(runs, data, test_ids, X_test, folds_path, folds_sha, targets_path, notes)
