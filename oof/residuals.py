"""How alike the models' errors are: the stacker gains only where residuals differ.

    python -m oof.residuals --runs work/runs/convnext_demo work/runs/eva_demo --targets work/targets/train

The correlation is accumulated over row chunks (sums and a Gram matrix of the residuals), so
memory stays at one chunk per model whatever the number of rows.
"""
import argparse
import sys

import numpy as np
import pandas as pd

from core.errors import exit_on_input_error
from core.metric import l2_normalize
from core.runs import check_compatible, load_run
from core.targets import targets_for

CHUNK_ROWS = 8192


def directional_residual(prediction, targets):
    """The unit prediction's part orthogonal to the unit target: the direction it errs in.

    The part along the target (1 - cosine) is left out: every imperfect model has it, which
    would make any two models look alike, and a normalized blend cannot cancel it.
    """
    p, t = l2_normalize(prediction), l2_normalize(targets)
    return p - np.sum(p * t, axis=1, keepdims=True) * t


def _residual_into(prediction, unit_targets, p, out):
    """directional_residual(prediction, unit_targets) written into `out` (`p`: scratch), the same operations in
    the same order, so the same float32 values."""
    l2_normalize(prediction, out=p)
    np.multiply(p, unit_targets, out=out)
    along = np.sum(out, axis=1, keepdims=True)
    np.multiply(along, unit_targets, out=out)
    np.subtract(p, out, out=out)
    return out


class ResidualCorrelation:
    """The correlation's accumulator: feed it chunks of rows (`add`), read the table (`result`).

    Per chunk, the residuals' sums and their Gram matrix are added up in float64; the correlation
    comes from those totals. The OOF report feeds it from its one pass over the files."""

    def __init__(self, names):
        self.names = list(names)
        m = len(self.names)
        self.total, self.gram, self.count = np.zeros(m), np.zeros((m, m)), 0
        self._scratch = None  # (chunk shape, buffers): reused chunk after chunk (see _buffers)

    def _buffers(self, shape):
        """Work arrays for chunks of `shape`, kept between chunks: the float64 stack of M residuals is
        above glibc's mmap threshold (32 MB), so a fresh one per chunk is a fresh mapping whose page faults
        cost more than the arithmetic (0.6 s of a 0.65 s chunk of 16,384 rows x 4 models here)."""
        if self._scratch is None or self._scratch[0] != shape:
            c, d = shape
            self._scratch = (shape, [np.empty((c, d), np.float32) for _ in range(3)],
                             np.empty((len(self.names), c * d), np.float64))
        return self._scratch[1], self._scratch[2]

    def add(self, predictions, targets):
        """One chunk: {name: (c, D) predictions} (any scale) and the (c, D) targets.

        The numbers of stacking each model's directional_residual in float64, computed in reused buffers."""
        (t, p, r), res = self._buffers(np.shape(targets))
        l2_normalize(targets, out=t)
        for k, name in enumerate(self.names):
            _residual_into(predictions[name], t, p, r)
            res[k] = r.ravel()
        self.total += res.sum(axis=1)
        self.gram += res @ res.T
        self.count += res.shape[1]

    def result(self):
        names = self.names
        mean = self.total / max(self.count, 1)
        cov = self.gram - self.count * np.outer(mean, mean)
        sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / np.outer(sd, sd)  # a constant residual (zero variance) gives NaN, as np.corrcoef does
        np.fill_diagonal(corr, np.where(sd > 0, 1.0, np.nan))
        return pd.DataFrame(np.clip(corr, -1.0, 1.0), index=names, columns=names)


def residual_correlation(predictions, targets, chunk_rows=CHUNK_ROWS):
    """Pearson correlation between models of their flattened directional residuals.

    `predictions` maps a model name to an (N, D) array aligned with `targets` (anything sliced by
    rows: arrays, memory maps, `RowView`s), read `chunk_rows` rows at a time."""
    names = list(predictions)
    n = len(targets)
    for name in names:
        if len(predictions[name]) != n:
            raise ValueError(f"{name}: {len(predictions[name])} rows of predictions for {n} targets")
    acc = ResidualCorrelation(names)
    for s in range(0, n, chunk_rows):
        acc.add({k: np.asarray(predictions[k][s:s + chunk_rows]) for k in names}, np.asarray(targets[s:s + chunk_rows]))
    return acc.result()


class RowView:
    """Rows of `array` in the order `index`, read lazily per slice (no full re-ordered copy)."""

    def __init__(self, array, index):
        self.array, self.index = array, np.asarray(index, dtype=np.int64)

    def __len__(self):
        return len(self.index)

    def __getitem__(self, rows):
        return np.asarray(self.array[self.index[rows]])


def run_residual_correlation(run_dirs, target_dir):
    runs = [load_run(r) for r in run_dirs]
    check_compatible(runs)
    ids = runs[0].oof_ids
    views = {}
    for r in runs:
        pos = {i: k for k, i in enumerate(r.oof_ids)}
        views[r.name] = RowView(r.oof, [pos[i] for i in ids])
    return residual_correlation(views, targets_for(target_dir, ids))


@exit_on_input_error
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
