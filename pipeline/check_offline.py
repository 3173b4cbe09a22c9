"""Offline inference must equal training-time prediction: compare two submissions row by row.

    python -m pipeline.check_offline work/submission_offline.csv work/ensemble/submission.csv [--min-cosine 0.999]

run_all's `offline-check` stage runs it on `models.submit`'s submission (fold checkpoints +
blend, from the test images alone) against the stacker's (the runs' own test predictions):
every image's two rows must have cosine >= --min-cosine (default 1 - 1e-3: the kNN bank is
stored in fp16). Exit 2 with the worst images otherwise.
"""
import argparse
import sys

import numpy as np

from core.errors import DataError, exit_on_input_error
from core.metric import cosine_scores
from core.submission import read_submission


def row_cosines(path_a, path_b):
    """(ids, cosine of each image's rows in the two submissions); the id sets must match."""
    ids_a, emb_a = read_submission(path_a)
    ids_b, emb_b = read_submission(path_b)
    if set(ids_a) != set(ids_b):
        only_a = sorted(set(ids_a) - set(ids_b))[:3]
        only_b = sorted(set(ids_b) - set(ids_a))[:3]
        raise DataError(path_a, f"imgIds differ from {path_b}: only here {only_a}; only there {only_b}")
    pos = {i: k for k, i in enumerate(ids_b)}
    return ids_a, cosine_scores(emb_a, emb_b[[pos[i] for i in ids_a]])


@exit_on_input_error
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pipeline.check_offline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("offline", help="the submission models.submit wrote")
    ap.add_argument("reference", help="the stacker's submission (ensemble.fit)")
    ap.add_argument("--min-cosine", type=float, default=1 - 1e-3, help="per-image floor (default: %(default)s)")
    args = ap.parse_args(argv)
    ids, cos = row_cosines(args.offline, args.reference)
    bad = np.flatnonzero(cos < args.min_cosine)
    if len(bad):
        worst = ", ".join(f"{ids[i]} ({cos[i]:.6f})" for i in bad[np.argsort(cos[bad])][:5])
        raise DataError(args.offline, f"{len(bad)} of {len(ids)} images differ from {args.reference} "
                                      f"(cosine < {args.min_cosine}); worst: {worst}")
    print(f"offline inference matches the stacker's submission: {len(ids)} images, "
          f"row cosine min {cos.min():.6f}, mean {cos.mean():.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
