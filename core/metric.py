"""The competition metric: mean row-wise cosine similarity after L2-normalisation."""
import argparse
import sys

import numpy as np

from core.errors import DataError, exit_on_data_error

EPS = 1e-12


def l2_normalize(x, axis=-1):
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, EPS)


def cosine_scores(pred, target):
    """Per-row cosine similarity between two (N, D) arrays."""
    pred = np.asarray(pred, dtype=np.float32)
    target = np.asarray(target, dtype=np.float32)
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(f"shape mismatch: predictions {pred.shape} vs targets {target.shape}")
    if not (np.isfinite(pred).all() and np.isfinite(target).all()):
        raise ValueError("NaN or inf in predictions or targets")
    return np.einsum("ij,ij->i", l2_normalize(pred), l2_normalize(target))


def mean_cosine(pred, target):
    """The competition score."""
    return float(cosine_scores(pred, target).mean())


@exit_on_data_error
def main(argv=None):
    from core.submission import read_submission
    from core.targets import load_targets

    ap = argparse.ArgumentParser(description="Score a submission.csv against target embeddings.")
    ap.add_argument("submission", help="submission.csv (imgId_eId,val)")
    ap.add_argument("--targets", required=True, help="targets folder written by core.targets")
    args = ap.parse_args(argv)
    ids, pred = read_submission(args.submission)
    t_ids, targets = load_targets(args.targets)
    pos = {i: k for k, i in enumerate(t_ids)}
    missing = [i for i in ids if i not in pos]
    if missing:
        raise DataError(args.submission, f"{len(missing)} imgIds not in targets {args.targets}, e.g. {missing[:3]}")
    score = mean_cosine(pred, targets[[pos[i] for i in ids]])
    print(f"score {score:.6f} over {len(ids)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
