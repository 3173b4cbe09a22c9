"""The report's numbers: the constant baseline, fold means, test scores, and whether a difference is real.

Every table is computed on all rows. The confidence interval of a difference resamples prompt
groups, not images: near-duplicate prompts share a group (core.folds), so resampling images
would count them as independent evidence and make the interval too narrow.
"""
import numpy as np

from core.metric import l2_normalize, mean_cosine
from oof.report.rows import chunks

BASELINE = "constant mean embedding"
N_BOOTSTRAP = 1000
BOOT_CHUNK = 25  # resamples per counts matrix: 25 x G float64 (200 MB at 1,000,000 groups)


def baseline_directions(fold_sums):
    """The constant mean-embedding baseline, scored out of fold: row i of fold k is predicted by the mean
    target of the other folds (as models.mean_baseline does). `fold_sums` (K, D): the targets' sums per
    sorted fold value. Returns ((K, D) unit prediction of each fold, the unit mean of all targets: the
    test-time prediction)."""
    total = fold_sums.sum(axis=0)
    other = l2_normalize((total[None, :] - fold_sums).astype(np.float32))
    return other, l2_normalize(total.astype(np.float32))


def fold_means(scores, folds, fold_values):
    """Mean of `scores` over each fold's rows, in `fold_values` order."""
    col = np.searchsorted(fold_values, folds)
    sums = np.bincount(col, weights=scores, minlength=len(fold_values))
    counts = np.bincount(col, minlength=len(fold_values))
    return (sums / np.maximum(counts, 1)).tolist()


def test_score(rows, test_ids, test_targets_dir):
    """Mean cosine of (N_test, D) predictions (rows in test_ids order) against held-out test targets."""
    from core.targets import targets_for

    targets = targets_for(test_targets_dir, list(test_ids))
    total = 0.0
    for s, e in chunks(len(test_ids)):
        total += mean_cosine(rows[s:e], targets[s:e]) * (e - s)
    return total / max(len(test_ids), 1)


def baseline_test_score(unit_mean, test_ids, test_targets_dir):
    from core.targets import targets_for

    targets = targets_for(test_targets_dir, list(test_ids))
    return float(np.mean(l2_normalize(targets) @ unit_mean))


def submission_test_score(path, test_targets_dir):
    from core.submission import read_submission
    from core.targets import targets_for

    ids, pred = read_submission(path)
    return mean_cosine(pred, targets_for(test_targets_dir, ids))


def group_codes(groups):
    """Group labels -> 0..G-1."""
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    return codes.ravel()


def bootstrap_means(values, groups, n_boot=N_BOOTSTRAP, seed=0, progress=False):
    """(n_boot, M) means of M per-image score arrays over group-bootstrap resamples.

    Each resample draws G groups with replacement (the same draws for every array, so the
    differences of two columns are paired). Only per-group sums enter: the mean of a resample
    is (counts @ group sums) / (counts @ group sizes), with counts from np.bincount of the draws.
    """
    values = np.asarray(values, dtype=np.float64)
    codes = group_codes(groups)
    n_groups = int(codes.max()) + 1
    sizes = np.bincount(codes, minlength=n_groups).astype(np.float64)
    sums = np.stack([np.bincount(codes, weights=v, minlength=n_groups) for v in values])  # (M, G)
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, len(values)), dtype=np.float64)
    # One (BOOT_CHUNK, G) counts matrix, reused: at 1,000,000 groups fresh (25, G) draws, counts and their
    # float64 copy per chunk (600 MB of new mappings, each page faulted in) cost more than the arithmetic.
    counts = np.empty((min(BOOT_CHUNK, n_boot), n_groups), dtype=np.float64)
    from tqdm import tqdm

    starts = range(0, n_boot, BOOT_CHUNK)
    for b0 in tqdm(starts, desc="bootstrap", unit="chunk", disable=not progress or n_groups < 100_000):
        nb = min(BOOT_CHUNK, n_boot - b0)
        for i in range(nb):  # row by row, the same stream as rng.integers(0, G, size=(nb, G)) at once
            counts[i] = np.bincount(rng.integers(0, n_groups, size=n_groups), minlength=n_groups)
        block = counts[:nb]
        out[b0:b0 + nb] = (block @ sums.T) / (block @ sizes)[:, None]
    return out


def difference(scores_a, scores_b, boot_a, boot_b, folds, fold_values, names=("A", "B")):
    """Paired difference A - B: mean, 95% percentile interval over the resamples, per-fold wins of A."""
    diff = float(np.mean(scores_a, dtype=np.float64) - np.mean(scores_b, dtype=np.float64))
    lo, hi = np.percentile(boot_a - boot_b, [2.5, 97.5])
    fa, fb = fold_means(scores_a, folds, fold_values), fold_means(scores_b, folds, fold_values)
    wins = sum(a > b for a, b in zip(fa, fb))
    ties = sum(a == b for a, b in zip(fa, fb))
    if lo > 0:
        verdict = f"{names[0]} better"
    elif hi < 0:
        verdict = f"{names[1]} better"
    else:
        verdict = "not distinguishable (interval contains 0)"
    return {"diff": diff, "ci_low": float(lo), "ci_high": float(hi), "fold_wins_a": int(wins), "fold_ties": int(ties),
            "folds": len(fold_values), "verdict": verdict,
            "fold_diffs": [a - b for a, b in zip(fa, fb)]}


def comparison_pairs(names, overall, ensemble=None):
    """Every pair of runs (better one first) and, with an ensemble, the ensemble vs the best single model."""
    order = sorted(names, key=lambda n: -overall[n])
    pairs = [(a, b) for i, a in enumerate(order) for b in order[i + 1:]]
    if ensemble is not None and order:
        pairs.insert(0, (ensemble, order[0]))
    return pairs


def difference_table(pairs, scores, boot_index, boot, folds, fold_values):
    """Rows of the "Is the difference real?" table for the given (A, B) pairs."""
    rows = []
    for a, b in pairs:
        d = difference(scores[a], scores[b], boot[:, boot_index[a]], boot[:, boot_index[b]], folds, fold_values, (a, b))
        rows.append({"a": a, "b": b, **d})
    return rows
