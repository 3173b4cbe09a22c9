"""The report's pass over the rows (readers: core.rows.NpyRows, re-exported here)."""
import numpy as np

from core.metric import l2_normalize
from core.rows import CHUNK_ROWS, NpyRows, chunks, id_order  # noqa: F401 (the report's readers)


def per_image_cosines(readers, targets, folds, chunk=CHUNK_ROWS, progress=False):
    """({name: float32 (N,) cosine of each row's prediction with its target}, the targets' float64 sum
    per fold value of `folds` (N,), sorted: what the constant baseline needs), in one pass over the targets.

    The arithmetic of core.metric.cosine_scores (both sides l2_normalize'd, then a row-wise dot),
    with each target chunk normalised once for all models; the predictions were checked finite
    when loaded."""
    from tqdm import tqdm

    n = len(targets)
    out = {name: np.empty(n, dtype=np.float32) for name in readers}
    values = np.unique(folds)
    col = np.searchsorted(values, folds)
    sums = np.zeros((len(values), targets.shape[1]), dtype=np.float64)
    spans = list(chunks(n, chunk))
    for s, e in tqdm(spans, desc="per-image cosine", disable=not progress or len(spans) < 10, unit="chunk"):
        raw = targets[s:e]
        onehot = (col[s:e][None, :] == np.arange(len(values))[:, None]).astype(np.float64)
        sums += onehot @ raw.astype(np.float64)
        t = l2_normalize(raw)
        for name, rows in readers.items():
            out[name][s:e] = np.einsum("ij,ij->i", l2_normalize(rows[s:e]), t)
    return out, sums
