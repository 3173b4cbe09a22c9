"""Per-fold outputs inside a run directory, and merging them into the run's artifacts.

    RUN/folds/fold<k>/model.pt        the fold checkpoint (config, weights, target statistics)
    RUN/folds/fold<k>/oof.npy         predictions for the fold's own rows, in row order
    RUN/folds/fold<k>/test.npy        predictions for the test set
    RUN/folds/fold<k>/train_log.csv
    RUN/folds/fold<k>/done.json       written last: the fold is finished (with the config hash)
    RUN/folds/fold<k>/last.pt         only while the fold trains: the resume point
"""
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from core.io import atomic_path, read_json, save_npy, write_json
from core.metric import cosine_scores, l2_normalize
from core.runs import LOG_COLUMNS, write_run


def fold_dir(run_dir, fold):
    return Path(run_dir) / "folds" / f"fold{fold}"


def fold_done(run_dir, fold, chash):
    done = fold_dir(run_dir, fold) / "done.json"
    return done.is_file() and read_json(done).get("config_hash") == chash


def save_fold_outputs(run_dir, fold, chash, checkpoint, oof, test, log_rows, stats, val_targets):
    """Write one finished fold (checkpoint first, done.json last); returns the fold's OOF cosine."""
    import torch

    d = fold_dir(run_dir, fold)
    with atomic_path(d / "model.pt") as tmp:
        torch.save(checkpoint, tmp)
    save_npy(d / "oof.npy", oof)
    save_npy(d / "test.npy", test)
    with atomic_path(d / "train_log.csv") as tmp:
        pd.DataFrame(log_rows, columns=LOG_COLUMNS).to_csv(tmp, index=False)
    score = float(cosine_scores(oof, val_targets).mean())
    write_json(d / "done.json", {"config_hash": chash, "fold": fold, "oof_cosine": score, **stats})
    (d / "last.pt").unlink(missing_ok=True)
    return score


def assemble_run(cfg, chash, data, run_dir, wall_seconds):
    """Every fold finished: merge them into oof.npy / test.npy / metrics.json / ... (core.runs format)."""
    dim = data.targets.shape[1]
    oof = np.zeros((len(data.ids), dim), dtype=np.float32)
    test_sum = np.zeros((len(data.test_ids), dim), dtype=np.float32)
    logs, fold_stats = [], {}
    for k in range(data.k):
        d = fold_dir(run_dir, k)
        oof[data.folds == k] = np.load(d / "oof.npy")
        test_sum += l2_normalize(np.load(d / "test.npy"))
        logs.append(pd.read_csv(d / "train_log.csv"))
        fold_stats[k] = read_json(d / "done.json")
    scores = cosine_scores(oof, data.targets)
    rates = [s["train_images_per_sec"] for s in fold_stats.values() if s.get("train_images_per_sec")]
    source = cfg["backbone"] if cfg["model"] == "backbone" else (cfg["knn"]["backbone"] or {})
    metrics = {
        "name": cfg["name"],
        "model": cfg["model"],
        "backbone": f"{source.get('source')}:{source.get('name')}" if source else f"features of {cfg['knn']['features_from']}",
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
              pd.concat(logs, ignore_index=True))
    return metrics
