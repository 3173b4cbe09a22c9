"""The per-fold layout inside a run directory, and merging the folds into the run's artifacts.

    RUN/folds/fold<k>/model.pt        the fold checkpoint (config, weights, target statistics)
    RUN/folds/fold<k>/oof.npy         predictions for the fold's own rows, in row order
    RUN/folds/fold<k>/test.npy        predictions for the test set
    RUN/folds/fold<k>/train_log.csv
    RUN/folds/fold<k>/done.json       written last: the fold is finished (with the config hash)
    RUN/folds/fold<k>/last.pt         only while the fold trains: the resume point (models.checkpoint)

The names are defined here, once; the trainer, the kNN model, prediction and the Kaggle pack find a
fold's files through `fold_dir`, `fold_checkpoint`, `fold_checkpoints` and `fold_index`.
"""
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DataError
from core.io import atomic_path, read_json, save_npy, write_json
from core.metric import cosine_scores, l2_normalize
from core.runs import LOG_COLUMNS, LOG_FILE, OOF_FILE, TEST_FILE, write_run

FOLDS_DIR = "folds"
FOLD_CHECKPOINT = "model.pt"
LAST_CHECKPOINT = "last.pt"
DONE_FILE = "done.json"
_FOLD_NAME = re.compile(r"fold(0|[1-9][0-9]*)")


def fold_dir(run_dir, fold):
    """RUN/folds/fold<k>."""
    return Path(run_dir) / FOLDS_DIR / f"fold{int(fold)}"


def fold_checkpoint(run_dir, fold):
    """RUN/folds/fold<k>/model.pt, the finished fold's checkpoint."""
    return fold_dir(run_dir, fold) / FOLD_CHECKPOINT


def fold_index(path):
    """k of a fold folder RUN/folds/fold<k>, or of a file inside it; ValueError for any other path."""
    for part in (Path(path), *Path(path).parents):
        match = _FOLD_NAME.fullmatch(part.name)
        if match and part.parent.name == FOLDS_DIR:
            return int(match.group(1))
    raise ValueError(f"{path}: not inside a fold folder ({FOLDS_DIR}/fold<k>)")


def fold_checkpoints(run_dir):
    """Every fold checkpoint of a trained run, in fold order; a DataError when there is none."""
    folds = Path(run_dir) / FOLDS_DIR
    paths = [d / FOLD_CHECKPOINT for d in folds.glob("fold*") if _FOLD_NAME.fullmatch(d.name)]
    paths = sorted((p for p in paths if p.is_file()), key=fold_index)
    if not paths:
        raise DataError(folds, f"no fold checkpoints ({FOLDS_DIR}/fold*/{FOLD_CHECKPOINT}): is this a trained run?")
    return paths


def fold_done(run_dir, fold, chash):
    done = fold_dir(run_dir, fold) / DONE_FILE
    return done.is_file() and read_json(done).get("config_hash") == chash


def save_fold_outputs(run_dir, fold, chash, checkpoint, oof, test, log_rows, stats, val_targets):
    """Write one finished fold (checkpoint first, done.json last); returns the fold's OOF cosine."""
    import torch

    d = fold_dir(run_dir, fold)
    with atomic_path(d / FOLD_CHECKPOINT) as tmp:
        torch.save(checkpoint, tmp)
    save_npy(d / OOF_FILE, oof)
    save_npy(d / TEST_FILE, test)
    with atomic_path(d / LOG_FILE) as tmp:
        pd.DataFrame(log_rows, columns=LOG_COLUMNS).to_csv(tmp, index=False)
    score = float(cosine_scores(oof, val_targets).mean())
    write_json(d / DONE_FILE, {"config_hash": chash, "fold": fold, "oof_cosine": score, **stats})
    (d / LAST_CHECKPOINT).unlink(missing_ok=True)
    return score


def model_label(cfg):
    """What predicts, in metrics.json's `backbone`: source:name, or where a kNN's / retrieval's queries come from."""
    if cfg["model"] == "retrieval":
        r = cfg["retrieval"]
        on = f"{cfg['backbone']['source']}:{cfg['backbone']['name']}" if r["query"] == "clip" else r["run"]
        return f"retrieval from {r['bank']} ({r['query']} queries: {on})"
    source = cfg["backbone"] if cfg["model"] == "backbone" else (cfg["knn"]["backbone"] or {})
    return f"{source.get('source')}:{source.get('name')}" if source else f"features of {cfg['knn']['features_from']}"


def assemble_run(cfg, chash, data, run_dir, wall_seconds):
    """Every fold finished: merge them into oof.npy / test.npy / metrics.json / ... (core.runs format)."""
    dim = data.targets.shape[1]
    oof = np.zeros((len(data.ids), dim), dtype=np.float32)
    test_sum = np.zeros((len(data.test_ids), dim), dtype=np.float32)
    logs, fold_stats = [], {}
    for k in range(data.k):
        d = fold_dir(run_dir, k)
        oof[data.folds == k] = np.load(d / OOF_FILE)
        test_sum += l2_normalize(np.load(d / TEST_FILE))
        logs.append(pd.read_csv(d / LOG_FILE))
        fold_stats[k] = read_json(d / DONE_FILE)
    scores = cosine_scores(oof, data.targets)
    rates = [s["train_images_per_sec"] for s in fold_stats.values() if s.get("train_images_per_sec")]
    metrics = {
        "name": cfg["name"],
        "model": cfg["model"],
        "backbone": model_label(cfg),
        "oof_cosine": float(scores.mean()),
        "fold_cosine": {str(k): float(scores[data.folds == k].mean()) for k in range(data.k)},
        "epochs": {str(k): s.get("epochs_trained") for k, s in fold_stats.items()},
        "train_images_per_sec": float(np.mean(rates)) if rates else None,
        "fold_seconds": {str(k): s.get("seconds") for k, s in fold_stats.items()},
        "wall_seconds": round(wall_seconds, 2),
        "config": cfg,
        "config_hash": chash,
        # the command that finished the run (provenance only: not part of the config hash)
        "argv": list(sys.argv),
        "command": shlex.join(sys.argv),
        **data.provenance,
    }
    write_run(run_dir, data.ids, oof, data.test_ids, test_sum / data.k, data.targets.mean(axis=0), metrics,
              pd.concat(logs, ignore_index=True), storage=cfg["predict"]["storage"])
    return metrics
