"""The constant mean-embedding baseline, scored out of fold, written as a run directory.

For each fold k the prediction is the mean target of the other folds; the test prediction
is the mean of all training targets. Any model must beat this.

    python -m models.mean_baseline --train DIR --test DIR --targets work/targets/train \
        --folds work/folds.csv --out work/runs/mean_baseline
"""
import argparse
import shlex
import sys
import time

import numpy as np

from core.dataset import load_dataset
from core.errors import exit_on_input_error
from core.folds import load_folds
from core.metric import cosine_scores, l2_normalize
from core.runs import write_run
from core.targets import targets_for
from models.provenance import input_provenance

CONSTANT_MODEL = "constant mean embedding"


def mean_baseline_predictions(targets, folds):
    """OOF predictions (N, D) and the all-data mean (D,)."""
    oof = np.empty_like(targets)
    for k in np.unique(folds):
        oof[folds == k] = targets[folds != k].mean(axis=0)
    return oof, targets.mean(axis=0)


@exit_on_input_error
def main(argv=None):
    ap = argparse.ArgumentParser(description="Constant mean-embedding baseline as an OOF run directory.")
    ap.add_argument("--train", required=True, help="training dataset folder (images/ + prompts.csv)")
    ap.add_argument("--test", required=True, help="test dataset folder (images/)")
    ap.add_argument("--targets", required=True, help="targets folder of the training prompts")
    ap.add_argument("--folds", required=True, help="folds.csv")
    ap.add_argument("--out", default="work/runs/mean_baseline")
    args = ap.parse_args(argv)
    command = list(sys.argv) if argv is None else ["python", "-m", "models.mean_baseline", *argv]
    t0 = time.time()
    train = load_dataset(args.train, require_prompts=True)
    test = load_dataset(args.test)
    ids = train["imgId"].tolist()
    targets = targets_for(args.targets, ids)
    folds = load_folds(args.folds, ids)
    oof, mean = mean_baseline_predictions(targets, folds)
    scores = cosine_scores(oof, targets)
    per_fold = {int(k): float(scores[folds == k].mean()) for k in np.unique(folds)}
    test_ids = test["imgId"].tolist()
    test_pred = np.tile(l2_normalize(mean), (len(test_ids), 1))
    metrics = {
        "name": "mean_baseline",
        "model": CONSTANT_MODEL,
        "oof_cosine": float(scores.mean()),
        "fold_cosine": per_fold,
        "seconds": round(time.time() - t0, 2),
        "argv": command,
        "command": shlex.join(command),
        **input_provenance(args.targets, args.folds, ids, test_ids, args.train, args.test),
    }
    log = [[k, 0, float("nan"), v, 0.0, 0.0] for k, v in per_fold.items()]
    write_run(args.out, ids, oof, test_ids, test_pred, mean, metrics, log)
    print(f"mean baseline OOF cosine {metrics['oof_cosine']:.4f} (folds: "
          + ", ".join(f"{v:.4f}" for v in per_fold.values()) + f") -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
