"""The report's pass over the rows (readers: core.rows.NpyRows, re-exported here)."""
import numpy as np

from core.errors import DataError
from core.metric import l2_normalize
from core.rows import CHUNK_ROWS, NpyRows, chunks, id_order  # noqa: F401 (the report's readers)


def one_pass(readers, targets, folds, ids, residual_names=(), chunk=CHUNK_ROWS, progress=False):
    """The report's one pass over the prediction files: every number it needs from their rows.

    Returns ({name: float32 (N,) cosine of each row's prediction with its target, plus the constant
    baseline's under stats.BASELINE}, the baseline's test-time prediction (the unit mean target), the
    residual correlation of `residual_names` (oof.residuals; None for fewer than 2)).

    The arithmetic of core.metric.cosine_scores (both sides l2_normalize'd, then a row-wise dot),
    each target chunk normalised once for all models. A NaN or inf in a prediction is a DataError
    naming its file and imgId (the load left that check to this pass). The baseline predicts fold k's
    rows by the mean target of the other folds: their sums come first, from the targets alone (not a
    prediction file)."""
    from tqdm import tqdm

    from oof.report.stats import BASELINE, baseline_directions
    from oof.residuals import ResidualCorrelation

    n = len(targets)
    values = np.unique(folds)
    col = np.searchsorted(values, folds)
    sums = np.zeros((len(values), targets.shape[1]), dtype=np.float64)
    spans = list(chunks(n, chunk))
    for s, e in spans:
        onehot = (col[s:e][None, :] == np.arange(len(values))[:, None]).astype(np.float64)
        sums += onehot @ targets[s:e].astype(np.float64)
    other, unit_mean = baseline_directions(sums)
    out = {name: np.empty(n, dtype=np.float32) for name in list(readers) + [BASELINE]}
    residuals = ResidualCorrelation(residual_names) if len(residual_names) >= 2 else None
    for s, e in tqdm(spans, desc="per-image cosine", disable=not progress or len(spans) < 10, unit="chunk"):
        t = l2_normalize(targets[s:e])
        units = {}
        for name, rows in readers.items():
            units[name] = l2_normalize(_finite(rows, s, e, ids))
            out[name][s:e] = np.einsum("ij,ij->i", units[name], t)
        out[BASELINE][s:e] = (t @ other.T)[np.arange(e - s), col[s:e]]
        if residuals is not None:
            residuals.add({k: units[k] for k in residual_names}, t)
    return out, unit_mean, None if residuals is None else residuals.result()


def _finite(rows, start, stop, ids):
    """rows[start:stop], or a DataError naming the file, the imgId and its file row when one holds NaN or inf."""
    block = rows[start:stop]
    ok = np.isfinite(block).all(axis=1)
    if not ok.all():
        i = start + int(np.flatnonzero(~ok)[0])
        row = i if rows.order is None else int(rows.order[i])
        raise DataError(rows.path, f"NaN or inf in the prediction for imgId {ids[i]!r} (row {row})")
    return block
