"""Two fitted ensembles as the two sides of the comparison page: each side is an ensemble's nested-CV OOF blend
(oof_blend.npy: every image predicted by a stacker fitted without its fold), so the page's paired bootstrap
over prompt groups says whether a change to the stack (a member added or dropped, another method) is real.

Targets, folds, groups and prompts are found through the runs the first ensemble blends (scores.json), as
for runs; both ensembles must have been fitted on the same folds and OOF images.
"""
from pathlib import Path

import pandas as pd

from core.errors import DataError
from core.folds import load_folds
from core.ids import read_ids
from core.io import read_json
from core.runs import LOG_COLUMNS, find_folds, find_targets, load_run
from core.targets import IDS_FILE
from oof.report.load import Inputs, RunInfo, find_images, find_prompts, load_groups_or_folds, open_targets
from oof.report.rows import NpyRows, id_order


def is_ensemble_dir(path):
    from ensemble.apply import ENSEMBLE_MANIFEST

    return (Path(path) / ENSEMBLE_MANIFEST).is_file()


def _names(paths):
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    names = [f"{p.parent.name}/{p.name}" for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def _blend_side(path, name, ids=None):
    """A RunInfo whose OOF rows are the ensemble's nested-CV blend (rows in `ids` order when given)."""
    from ensemble.apply import OOF_BLEND_FILE, OOF_BLEND_IDS_FILE, SCORES_FILE, read_manifest

    manifest = read_manifest(path)
    if not (path / SCORES_FILE).is_file():
        raise DataError(path / SCORES_FILE, "missing: not a fitted ensemble folder (run `python -m ensemble.fit`)")
    scores = read_json(path / SCORES_FILE)
    if not (path / OOF_BLEND_FILE).is_file():
        raise DataError(path / OOF_BLEND_FILE, "missing: fitted by an older ensemble.fit; refit it to compare")
    b_ids = read_ids(path / OOF_BLEND_IDS_FILE)
    if ids is not None and (len(b_ids) != len(ids) or set(b_ids) != set(ids)):
        raise DataError(path / OOF_BLEND_IDS_FILE, "OOF imgIds differ from the other ensemble's")
    rows = NpyRows(path / OOF_BLEND_FILE, id_order(b_ids, ids or b_ids, path / OOF_BLEND_IDS_FILE))
    chosen = scores.get("chosen_method") or manifest.get("method")
    metrics = {"name": name, "model": "ensemble", "config_hash": None,
               "config": {"method": chosen, "models": ", ".join(manifest.get("models", [])),
                          "nested_cv_cosine": (scores.get("methods", {}).get(chosen) or {}).get("overall")},
               "folds": {"sha256": (scores.get("folds_file") or {}).get("sha256")}}
    return RunInfo(name, path, metrics, manifest, list(b_ids), [], rows, None, pd.DataFrame(columns=LOG_COLUMNS)), \
        scores


def load_ensemble_pair(paths, targets=None, folds=None, prompts=None, images=None):
    """Inputs for the comparison page of two ensemble folders (A, B)."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_dir():
            raise DataError(p, "ensemble folder not found")
    names = _names(paths)
    a, scores_a = _blend_side(paths[0], names[0])
    b, scores_b = _blend_side(paths[1], names[1], a.oof_ids)
    if a.metrics["folds"]["sha256"] != b.metrics["folds"]["sha256"]:
        raise DataError(paths[1], f"fitted on other folds ({b.metrics['folds']['sha256']}) than {paths[0]} "
                                  f"({a.metrics['folds']['sha256']}): their nested-CV blends do not pair")
    blended = scores_a.get("runs") or []
    if not blended:
        raise DataError(paths[0] / "scores.json", "names no runs: cannot find the targets, folds and prompts")
    runs = [load_run(blended[0]["path"], verify_hashes=False)]
    ids, notes = a.oof_ids, []
    folds_path, folds_sha, fold_notes = find_folds(runs, folds)
    notes += fold_notes
    fold_of = load_folds(folds_path, ids)
    groups, groups_source = load_groups_or_folds(folds_path, ids, fold_of)
    targets_dir = find_targets(runs, targets)
    bank_ids, bank = open_targets(targets_dir)
    target_rows = NpyRows(bank.path, id_order(bank_ids, ids, Path(targets_dir) / IDS_FILE))
    prompt_frame, prompts_path = find_prompts(runs, ids, prompts, notes)
    return Inputs([a, b], [], ids, fold_of, groups, groups_source, Path(targets_dir), target_rows, bank_ids, bank,
                  Path(folds_path), folds_sha, prompt_frame, prompts_path, find_images(runs, images), None, None,
                  notes)
