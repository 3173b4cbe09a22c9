"""The pipeline's last word: per-model and stacked OOF scores, then the submission's test score.

    python -m pipeline.summary --work work --runs work/runs/mean_baseline work/runs/convnext_demo ...
"""
import argparse
import sys
from pathlib import Path

from core.errors import DataError, exit_on_input_error
from core.io import read_json
from core.metric import mean_cosine
from core.runs import METRICS_FILE
from core.submission import read_submission
from core.targets import targets_for
from ensemble.apply import SCORES_FILE
from oof.residuals import run_residual_correlation
from pipeline.layout import WorkTree


def _read(path, what):
    if not Path(path).is_file():
        raise DataError(path, f"missing: {what}")
    try:
        return read_json(path)
    except ValueError as e:
        raise DataError(path, f"not valid JSON ({e})") from None


@exit_on_input_error
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="work")
    ap.add_argument("--runs", nargs="+", required=True)
    args = ap.parse_args(argv)
    work = WorkTree(args.work)
    print("\nOOF cosine per model (out of fold, grouped folds):")
    for run in args.runs:
        m = _read(Path(run) / METRICS_FILE, "the run is unfinished (train it first)")
        folds = ", ".join(f"{v:.4f}" for v in m["fold_cosine"].values())
        print(f"  {m['name']:<16} {m['oof_cosine']:.4f}   folds: {folds}")
    corr = run_residual_correlation(args.runs, work.targets("train"))
    print("pairwise correlation of OOF residuals (direction of each error; lower = more for the stacker):")
    print("  " + corr.round(3).to_string().replace("\n", "\n  "))
    scores = _read(work.ensemble / SCORES_FILE, "run the ensemble stage first (python -m ensemble.fit)")
    print("stacked (nested CV: each fold scored by a stacker fitted on the other folds):")
    for method, s in scores["methods"].items():
        mark = "  <- chosen" if method == scores["chosen_method"] else ""
        print(f"  {method:<16} {s['overall']:.4f}{mark}")
    ids, pred = read_submission(work.submission)
    score = mean_cosine(pred, targets_for(work.targets("test"), ids))
    print(f"\nsubmission score on the demo test set ({len(ids)} images, true prompts): {score:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
