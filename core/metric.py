"""The competition metric: mean row-wise cosine similarity after L2-normalisation."""
import argparse
import sys

import numpy as np

from core.errors import DataError, exit_on_input_error

EPS = 1e-12  # the norm floor of every row normalisation: an all-zero row stays zero
CHUNK_ROWS = 8192  # rows normalised at a time: a memory-mapped input is never read whole


def l2_normalize(x, out=None):
    """Rows (the last axis) scaled to unit L2 norm, float32; all-zero rows stay zero.

    The one row normalisation of the project. `x`: any array (float16/32/64, memory-mapped too), read
    CHUNK_ROWS rows at a time; `out`: a float32 array of x's shape to write into (`x` itself: in place)."""
    x = np.asarray(x)
    if out is None:
        out = np.empty(x.shape, dtype=np.float32)
    if x.ndim < 2:  # one vector
        block = x.astype(np.float32, copy=False)
        np.divide(block, np.maximum(np.linalg.norm(block, axis=-1, keepdims=True), EPS), out=out)
        return out
    for s in range(0, len(x), CHUNK_ROWS):
        block = np.asarray(x[s:s + CHUNK_ROWS], dtype=np.float32)
        norm = np.linalg.norm(block, axis=-1, keepdims=True)
        np.divide(block, np.maximum(norm, EPS), out=out[s:s + CHUNK_ROWS])
    return out


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


@exit_on_input_error
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
