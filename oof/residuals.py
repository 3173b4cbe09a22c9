"""How alike the models' errors are: the stacker gains only where residuals differ.

    python -m oof.residuals --runs work/runs/convnext_demo work/runs/eva_demo --targets work/targets/train
"""
import argparse
import sys

import numpy as np
import pandas as pd

from core.metric import l2_normalize
from core.targets import targets_for
from oof.runs import aligned, check_compatible, load_run


def directional_residual(prediction, targets):
    """The unit prediction's part orthogonal to the unit target: the direction it errs in.

    The part along the target (1 - cosine) is left out: every imperfect model has it, which
    would make any two models look alike, and a normalized blend cannot cancel it.
    """
    p, t = l2_normalize(prediction), l2_normalize(targets)
    return p - np.sum(p * t, axis=1, keepdims=True) * t


def residual_correlation(predictions, targets):
    """Pearson correlation between models of their flattened directional residuals.

    `predictions` maps a model name to an (N, D) array aligned with `targets`.
    """
    names = list(predictions)
    res = np.stack([directional_residual(predictions[n], targets).ravel() for n in names])
    return pd.DataFrame(np.corrcoef(res), index=names, columns=names)


def run_residual_correlation(run_dirs, target_dir):
    runs = [load_run(r) for r in run_dirs]
    check_compatible(runs)
    ids = runs[0].oof_ids
    return residual_correlation({r.name: aligned(r, ids) for r in runs}, targets_for(target_dir, ids))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="finished run directories (same folds)")
    ap.add_argument("--targets", default="work/targets/train", help="training targets folder (default: %(default)s)")
    args = ap.parse_args(argv)
    corr = run_residual_correlation(args.runs, args.targets)
    print("pairwise correlation of OOF residuals (unit prediction's part orthogonal to the target):")
    print(corr.round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
