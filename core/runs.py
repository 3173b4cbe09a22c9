"""The run directory every model writes, and everything downstream reads.

    work/runs/<name>/
        oof.npy             float32 or float16 (N_train, 384): raw out-of-fold model outputs
        oof_ids.csv         imgId (row order of oof.npy)
        test.npy            float32 or float16 (N_test, 384): mean over folds of L2-normalised fold predictions
        test_ids.csv        imgId (row order of test.npy)
        mean_embedding.npy  float32 (384,): the training targets' mean, the fallback prediction
        metrics.json        per-fold / overall OOF cosine, config + hash, inputs' paths + hashes, timings
        train_log.csv       fold,epoch,train_loss,val_cosine,lr,seconds
        manifest.json       sha256 of each file above, and `predictions_dtype` (the dtype of oof.npy and
                            test.npy); written last, so its presence marks the run complete

float16 storage (`write_run(..., storage="float16")`, a model config's `predict.storage`) halves the
predictions' size: 2,000,000 OOF rows are 1.5 GB instead of 3.1 GB per model. Every reader accepts
both; a manifest without `predictions_dtype` (runs written before the option) means float32.

Partial state of an unfinished run (checkpoints, per-fold predictions) lives in the same folder
under `folds/`; it is the trainer's business (models/fold_outputs.py), not this format's.

metrics.json records where the run's inputs came from (`folds: {path, sha256}`, `targets: {path, ...}`);
`find_folds` / `find_targets` turn those records into the files every reader of several runs
(the stacker, the report) uses, refusing runs that disagree. A relative recorded path is tried
against the working directory first, then against the run directory.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core import EMBEDDING_DIM
from core.errors import DataError
from core.ids import read_ids
from core.io import npy_writer, read_json, save_csv, save_npy, sha256_file, write_json
from core.targets import META_FILE

OOF_FILE = "oof.npy"
OOF_IDS_FILE = "oof_ids.csv"
TEST_FILE = "test.npy"
TEST_IDS_FILE = "test_ids.csv"
MEAN_FILE = "mean_embedding.npy"
METRICS_FILE = "metrics.json"
LOG_FILE = "train_log.csv"
RUN_MANIFEST = "manifest.json"
LOG_COLUMNS = ["fold", "epoch", "train_loss", "val_cosine", "lr", "seconds"]
ARTIFACT_FILES = [OOF_FILE, OOF_IDS_FILE, TEST_FILE, TEST_IDS_FILE, MEAN_FILE, METRICS_FILE, LOG_FILE]
PREDICTIONS_DTYPE = "predictions_dtype"  # manifest.json key: the stored dtype of oof.npy and test.npy
STORAGE_DTYPES = ("float32", "float16")
FLOAT16_MAX = float(np.finfo(np.float16).max)
CHECK_ROWS = 65536  # rows checked, converted and written at a time: a memory-mapped input is never read whole


@dataclass
class Run:
    """A finished run's artifacts, arrays aligned with their id lists."""

    name: str
    path: Path
    oof_ids: list
    oof: np.ndarray
    test_ids: list
    test: np.ndarray
    mean_embedding: np.ndarray
    metrics: dict = field(default_factory=dict)
    storage: str = "float32"  # the stored dtype of oof.npy / test.npy (oof and test are read-only memory maps of it)

    @property
    def folds_sha256(self):
        return (self.metrics.get("folds") or {}).get("sha256")


def write_run(run_dir, oof_ids, oof, test_ids, test, mean_embedding, metrics, train_log, storage="float32"):
    """Write every artifact atomically, the manifest last; `storage`: the dtype of oof.npy and test.npy.

    `oof` / `test`: arrays or anything sliced by rows (a memory map), checked (shape, finite, float16's range)
    before anything is written, then converted and written CHECK_ROWS rows at a time."""
    run_dir = Path(run_dir)
    if storage not in STORAGE_DTYPES:
        raise ValueError(f"storage must be one of {STORAGE_DTYPES}, got {storage!r}")
    oof_ids, test_ids = list(oof_ids), list(test_ids)
    for name, rows, ids in ((OOF_FILE, oof, oof_ids), (TEST_FILE, test, test_ids)):
        _check_shape(run_dir / name, rows, ids)
        _check_finite(run_dir / name, rows, ids, storage)
    _write_rows(run_dir / OOF_FILE, oof, storage)
    save_csv(run_dir / OOF_IDS_FILE, pd.DataFrame({"imgId": list(oof_ids)}))
    _write_rows(run_dir / TEST_FILE, test, storage)
    save_csv(run_dir / TEST_IDS_FILE, pd.DataFrame({"imgId": list(test_ids)}))
    save_npy(run_dir / MEAN_FILE, np.asarray(mean_embedding, dtype=np.float32).reshape(EMBEDDING_DIM))
    write_json(run_dir / METRICS_FILE, metrics)
    log = pd.DataFrame(train_log, columns=LOG_COLUMNS) if not isinstance(train_log, pd.DataFrame) else train_log
    save_csv(run_dir / LOG_FILE, log)
    write_json(run_dir / RUN_MANIFEST, {**{name: sha256_file(run_dir / name) for name in ARTIFACT_FILES},
                                        PREDICTIONS_DTYPE: storage})


def is_complete(run_dir):
    return (Path(run_dir) / RUN_MANIFEST).is_file()


def _check_shape(path, arr, ids):
    if tuple(np.shape(arr)) != (len(ids), EMBEDDING_DIM):
        raise DataError(path, f"shape {tuple(np.shape(arr))}, expected ({len(ids)}, {EMBEDDING_DIM})")


def _check_finite(path, rows, ids, storage=None):
    """DataError naming the first row holding NaN or inf (or, for float16 storage, a value float16 would store
    as inf); `rows` is read CHECK_ROWS rows at a time."""
    for s in range(0, len(rows), CHECK_ROWS):
        block = np.asarray(rows[s:s + CHECK_ROWS], dtype=np.float32)
        ok = np.isfinite(block).all(axis=1)
        if not ok.all():
            row = s + int(np.flatnonzero(~ok)[0])
            raise DataError(path, f"NaN or inf in the prediction for imgId {ids[row]!r} (row {row})")
        if storage == "float16":
            big = np.abs(block).max(axis=1) > FLOAT16_MAX
            if big.any():
                row = s + int(np.flatnonzero(big)[0])
                raise DataError(path, f"prediction for imgId {ids[row]!r} (row {row}) exceeds float16's range "
                                      f"(|x| > {FLOAT16_MAX:g}); store the run as float32")


def _write_rows(path, rows, storage):
    """rows -> a .npy of dtype `storage`, CHECK_ROWS rows at a time (atomically)."""
    n = len(rows)
    with npy_writer(path, (n, EMBEDDING_DIM), storage) as write:
        for s in range(0, n, CHECK_ROWS):
            e = min(s + CHECK_ROWS, n)
            write(s, e, np.asarray(rows[s:e], dtype=np.float32).astype(storage))


def _open_predictions(path, ids, storage, check_values=True):
    """Read-only memory map of oof.npy / test.npy, checked (shape, dtype, finite) without reading it whole."""
    from core.rows import NpyRows

    arr = np.load(path, mmap_mode="r")
    if (storage is not None and arr.dtype != np.dtype(storage)) or arr.dtype.kind != "f":
        raise DataError(path, f"dtype {arr.dtype}, but {RUN_MANIFEST} records {storage or 'a float array'}")
    _check_shape(path, arr, ids)
    if check_values:
        _check_finite(path, NpyRows(path), ids)  # plain reads: the check leaves no pages resident
    return arr


def load_run(run_dir, verify_hashes=True, check_oof_values=True):
    """Read and validate a finished run directory. `check_oof_values=False`: leave the NaN / inf check of
    oof.npy to a reader that passes over its rows anyway (the OOF report), so the file is read once."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(run_dir, "run directory not found")
    manifest_path = run_dir / RUN_MANIFEST
    if not manifest_path.is_file():
        raise DataError(manifest_path, "missing: the run is unfinished (train it to completion or --resume)")
    manifest = read_json(manifest_path)
    for name in ARTIFACT_FILES:
        path = run_dir / name
        if not path.is_file():
            raise DataError(path, "missing although the manifest lists it")
        if verify_hashes and manifest.get(name) != sha256_file(path):
            raise DataError(path, "content differs from manifest.json (file changed after the run finished)")
    oof_ids = read_ids(run_dir / OOF_IDS_FILE)
    test_ids = read_ids(run_dir / TEST_IDS_FILE)
    storage = manifest.get(PREDICTIONS_DTYPE)  # None: a run written before the option (float32)
    if storage is not None and storage not in STORAGE_DTYPES:
        raise DataError(manifest_path, f"{PREDICTIONS_DTYPE} {storage!r} is not one of {STORAGE_DTYPES}")
    oof = _open_predictions(run_dir / OOF_FILE, oof_ids, storage, check_oof_values)
    test = _open_predictions(run_dir / TEST_FILE, test_ids, storage)
    mean = np.load(run_dir / MEAN_FILE).astype(np.float32)
    metrics = read_json(run_dir / METRICS_FILE)
    return Run(run_dir.name, run_dir, oof_ids, oof, test_ids, test, mean, metrics, str(oof.dtype))


def _first_difference(a, b):
    sa, sb = set(a), set(b)
    only_a = sorted(sa - sb)[:3]
    only_b = sorted(sb - sa)[:3]
    return only_a, only_b


def check_compatible(runs, require_same_folds=True):
    """Raise a DataError unless all runs share OOF ids, test ids and (optionally) folds."""
    if not runs:
        raise ValueError("no runs given")
    ref = runs[0]
    for run in runs[1:]:
        for what, a, b in (("OOF", ref.oof_ids, run.oof_ids), ("test", ref.test_ids, run.test_ids)):
            if set(a) != set(b):
                only_a, only_b = _first_difference(a, b)
                raise DataError(
                    run.path,
                    f"{what} imgIds differ from run {ref.path}: only in {ref.name}: {only_a}; "
                    f"only in {run.name}: {only_b}",
                )
        if require_same_folds and (ref.folds_sha256 is None or ref.folds_sha256 != run.folds_sha256):
            raise DataError(
                run.path / METRICS_FILE,
                f"trained on different folds than {ref.path} (folds sha256 {run.folds_sha256} vs {ref.folds_sha256}); "
                "stacking OOF predictions from different folds leaks",
            )


def aligned(run, ids, which="oof"):
    """The run's predictions re-ordered to `ids`."""
    src_ids, arr = (run.oof_ids, run.oof) if which == "oof" else (run.test_ids, run.test)
    pos = {i: k for k, i in enumerate(src_ids)}
    return np.asarray(arr)[[pos[i] for i in ids]]


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
            raise DataError(Path(runs[0].path) / METRICS_FILE,
                            "records no folds path (metrics.json: folds.path); pass --folds")
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
    """The targets folder the runs were trained on (`targets` when given); runs recording different
    folders are refused unless those folders hold the same targets (the same meta.json key)."""
    if targets is not None:
        return Path(targets)
    found = {}
    for run in runs:
        raw = _recorded(run, "targets")
        if raw is None:
            raise DataError(Path(run.path) / METRICS_FILE,
                            "records no targets path (metrics.json: targets.path); pass --targets")
        found[run.name] = resolve_recorded_path(raw, run)
    paths = {p.resolve() for p in found.values()}
    if len(paths) > 1:
        keys = {}
        for name, p in found.items():
            meta = p / META_FILE
            keys[name] = read_json(meta).get("key") if meta.is_file() else None
        if len(set(keys.values())) > 1 or None in keys.values():
            detail = "; ".join(f"{n}: {found[n]}" for n in found)
            raise DataError(found[runs[0].name],
                            f"runs were trained on different targets ({detail}); pass --targets if they are the same")
    return found[runs[0].name]
