"""Find and validate everything the report reads; nothing here computes a score.

Targets, folds, groups, prompts and images are found through the runs' metrics.json (as
`ensemble.fit` finds them) unless given as options. A run folder without manifest.json is
still training: it is listed as unfinished and not read. A run missing a file, runs or an
ensemble with other imgIds or folds: a DataError naming the file.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.dataset import IMAGES_DIR, PROMPTS_FILE, read_prompts
from core.errors import DataError
from core.folds import load_folds, load_groups
from core.ids import read_ids
from core.io import read_json
from core.runs import (
    LOG_COLUMNS,
    LOG_FILE,
    OOF_FILE,
    RUN_MANIFEST,
    TEST_FILE,
    check_compatible,
    find_folds,
    find_targets,
    is_complete,
    load_run,
    resolve_recorded_path,
    run_names,
)
from core.targets import IDS_FILE, TARGETS_FILE, open_target_rows
from oof.report.rows import NpyRows, id_order


@dataclass
class RunInfo:
    name: str
    path: Path
    metrics: dict
    manifest: dict
    oof_ids: list
    test_ids: list
    oof: NpyRows  # rows in the report's id order
    test: NpyRows  # rows in test_ids order
    log: pd.DataFrame


@dataclass
class EnsembleInfo:
    path: Path
    manifest: dict  # ensemble.json
    scores: dict  # scores.json
    weights: dict = None  # ensemble.blend.load_weights(weights.npz), when present
    blend: NpyRows = None  # the chosen blend's nested-CV OOF predictions, in the report's id order
    submission: Path = None

    @property
    def method(self):
        return self.scores.get("chosen_method") or self.manifest.get("method")


@dataclass
class Inputs:
    runs: list
    unfinished: list
    ids: list
    folds: np.ndarray
    groups: np.ndarray
    groups_source: str
    targets_dir: Path
    targets: NpyRows  # training targets in the report's id order
    bank_ids: list  # every training prompt's imgId (the targets folder's order), for nearest-prompt decoding
    bank: NpyRows
    folds_path: Path
    folds_sha256: str
    prompts: pd.DataFrame = None  # aligned with ids: imgId, prompt, extra columns
    prompts_path: Path = None
    images_dir: Path = None
    ensemble: EnsembleInfo = None
    test_targets: Path = None
    notes: list = field(default_factory=list)

    @property
    def names(self):
        return [r.name for r in self.runs]

    @property
    def n(self):
        return len(self.ids)


def split_finished(run_dirs):
    """(finished run dirs, unfinished ones): a folder without manifest.json is still training."""
    finished, unfinished = [], []
    seen = {}
    for p in map(Path, run_dirs):
        if not p.is_dir():
            raise DataError(p, "run directory not found")
        if p.resolve() in seen:
            raise DataError(p, f"run given twice (also as {seen[p.resolve()]})")
        seen[p.resolve()] = p
        (finished if is_complete(p) else unfinished).append(p)
    return finished, unfinished


def read_log(path):
    """A run's train_log.csv (core.runs LOG_COLUMNS)."""
    try:
        frame = pd.read_csv(path)
    except Exception as e:  # pandas raises several types for unparsable files
        raise DataError(path, f"cannot be parsed as CSV: {e}") from e
    missing = [c for c in LOG_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}")
    return frame


def load_runs(run_dirs, verify_hashes=True):
    """Validate the finished runs (manifest, hashes, ids, finite test values), then keep only readers, not arrays.
    The OOF values are checked finite by the report's one pass over them (oof.report.rows.one_pass)."""
    runs = []
    for p in run_dirs:
        run = load_run(p, verify_hashes=verify_hashes, check_oof_values=False)
        run.oof = run.test = None  # validated; the report streams the files instead
        runs.append(run)
    check_compatible(runs)
    ids = list(runs[0].oof_ids)
    out = []
    for run, name in zip(runs, run_names(runs)):
        path = Path(run.path)
        log_frame = read_log(path / LOG_FILE)
        order = id_order(run.oof_ids, ids, path / OOF_FILE)
        if order is None:  # the same ids in the same order: one list for all (2,000,000 ids: ~150 MB a copy)
            run.oof_ids = ids
        out.append(RunInfo(name, path, run.metrics, read_json(path / RUN_MANIFEST), run.oof_ids, run.test_ids,
                           NpyRows(path / OOF_FILE, order), NpyRows(path / TEST_FILE), log_frame))
    return out, runs


def open_targets(target_dir):
    """(imgIds of a core.targets folder, its rows in that order); checks the folder is complete."""
    target_dir = Path(target_dir)
    t_ids, rows = open_target_rows(target_dir)
    if rows.file_rows != len(t_ids):
        raise DataError(target_dir / TARGETS_FILE, f"{rows.file_rows} rows for {len(t_ids)} ids in {IDS_FILE}")
    return t_ids, rows


def load_groups_or_folds(folds_path, ids, folds):
    """Prompt groups (groups.csv beside folds.csv), else the folds as the resampling unit."""
    groups = load_groups(folds_path, ids, folds)
    if groups is not None:
        return np.asarray(groups), "prompt groups (groups.csv beside folds.csv)"
    return np.asarray(folds), (f"folds: no groups file beside {folds_path}, so the bootstrap resamples whole folds "
                               f"({len(np.unique(folds))} units; a coarse interval). Re-run core.folds to write it")


def _train_dir(runs):
    for run in runs:
        raw = (run.metrics.get("train_images") or {}).get("path")
        if raw:
            return resolve_recorded_path(raw, run)
    return None


def find_prompts(runs, ids, prompts=None, notes=None):
    """prompts.csv rows aligned with `ids` (None when no prompts.csv is known)."""
    if prompts is not None:
        path = Path(prompts)
        path = path / PROMPTS_FILE if path.is_dir() else path
    else:
        train_dir = _train_dir(runs)
        path = train_dir / PROMPTS_FILE if train_dir is not None else None
        if path is None or not path.is_file():
            notes.append("no prompts.csv found (metrics.json: train_images.path; or --prompts): "
                         "the prompt-length, source and word breakdowns and the prompt texts are left out")
            return None, None
    frame = read_prompts(path)
    pos = pd.Index(frame["imgId"])
    rows = pos.get_indexer(ids)
    if (rows < 0).any():
        missing = [ids[i] for i in np.flatnonzero(rows < 0)[:3]]
        raise DataError(path, f"{int((rows < 0).sum())} imgIds of the runs have no prompt here, e.g. {missing}")
    if np.array_equal(rows, np.arange(len(frame))):  # prompts.csv lists the runs' ids in their order: no copy
        return frame, path
    return frame.iloc[rows].reset_index(drop=True), path


def find_images(runs, images=None):
    if images is not None:
        path = Path(images)
        if not path.is_dir():
            raise DataError(path, "image folder not found")
        return path / IMAGES_DIR if (path / IMAGES_DIR).is_dir() else path
    train_dir = _train_dir(runs)
    if train_dir is not None and (train_dir / IMAGES_DIR).is_dir():
        return train_dir / IMAGES_DIR
    return None


def load_ensemble(path, ids, folds_sha256, dim):
    from core.submission import SUBMISSION_FILE
    from ensemble.apply import OOF_BLEND_FILE, OOF_BLEND_IDS_FILE, SCORES_FILE, WEIGHTS_FILE, read_manifest
    from ensemble.blend import load_weights

    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "ensemble folder not found")
    manifest = read_manifest(path)
    if not (path / SCORES_FILE).is_file():
        raise DataError(path / SCORES_FILE, "missing: not a fitted ensemble folder (run `python -m ensemble.fit`)")
    scores = read_json(path / SCORES_FILE)
    used = (scores.get("folds_file") or {}).get("sha256")
    if used is not None and used != folds_sha256:
        raise DataError(path / SCORES_FILE, f"fitted on other folds (sha256 {used[:12]}...) than the runs "
                                            f"({folds_sha256[:12]}...): its per-fold scores do not compare")
    info = EnsembleInfo(path, manifest, scores)
    if (path / WEIGHTS_FILE).is_file():
        info.weights = load_weights(path / WEIGHTS_FILE)
    if (path / OOF_BLEND_FILE).is_file():
        b_ids = read_ids(path / OOF_BLEND_IDS_FILE)
        if set(b_ids) != set(ids) or len(b_ids) != len(ids):
            extra = sorted(set(b_ids) - set(ids))[:3]
            raise DataError(path / OOF_BLEND_IDS_FILE,
                            f"imgIds differ from the runs' OOF ids (e.g. only here: {extra}, "
                            f"{len(set(ids) - set(b_ids))} of the runs' ids absent)")
        info.blend = NpyRows(path / OOF_BLEND_FILE, id_order(b_ids, ids, path / OOF_BLEND_IDS_FILE))
        if info.blend.file_rows != len(b_ids) or info.blend.dim != dim:
            raise DataError(path / OOF_BLEND_FILE, f"shape ({info.blend.file_rows}, {info.blend.dim}), expected "
                                                   f"({len(b_ids)}, {dim}) for the ids in {OOF_BLEND_IDS_FILE}")
    if (path / SUBMISSION_FILE).is_file():
        info.submission = path / SUBMISSION_FILE
    return info


def load_inputs(run_dirs, ensemble=None, test_targets=None, targets=None, folds=None, prompts=None, images=None,
                verify_hashes=True, require_all_finished=False):
    finished, unfinished = split_finished(run_dirs)
    if require_all_finished and unfinished:
        raise DataError(Path(unfinished[0]) / RUN_MANIFEST, "missing: the run is unfinished (still training?)")
    if not finished:
        raise DataError(Path(run_dirs[0]), "no finished run to report on (every run folder lacks manifest.json)")
    infos, runs = load_runs(finished, verify_hashes=verify_hashes)
    notes = [f"run {p} is unfinished (no {RUN_MANIFEST}): listed, not read" for p in unfinished]
    ids = list(infos[0].oof_ids)
    folds_path, folds_sha, fold_notes = find_folds(runs, folds)
    notes += fold_notes
    fold_of = load_folds(folds_path, ids)
    groups, groups_source = load_groups_or_folds(folds_path, ids, fold_of)
    targets_dir = find_targets(runs, targets)
    bank_ids, bank = open_targets(targets_dir)
    target_rows = NpyRows(bank.path, id_order(bank_ids, ids, Path(targets_dir) / IDS_FILE))
    if target_rows.order is None:  # the targets list the runs' ids in their order: keep one copy of them
        bank_ids = ids
    if target_rows.dim != infos[0].oof.dim:
        raise DataError(targets_dir / TARGETS_FILE, f"{target_rows.dim} dims, the runs predict {infos[0].oof.dim}")
    prompt_frame, prompts_path = find_prompts(runs, ids, prompts, notes)
    if test_targets is not None:
        open_targets(test_targets)
    ens = load_ensemble(ensemble, ids, folds_sha, target_rows.dim) if ensemble is not None else None
    if ens is not None and ens.blend is None:
        notes.append(f"{ensemble} holds no per-image OOF blend (fitted by an older ensemble.fit): the ensemble's "
                     "per-image numbers are left out; re-run ensemble.fit to get them")
    return Inputs(infos, [str(p) for p in unfinished], ids, fold_of, groups, groups_source, Path(targets_dir),
                  target_rows, bank_ids, bank, Path(folds_path), folds_sha, prompt_frame, prompts_path,
                  find_images(runs, images), ens, Path(test_targets) if test_targets is not None else None, notes)
