"""Pick a method's hyper-parameter for each outer fold by an inner CV (per_dim's shrinkage, ridge's alpha).

`path(train)` fits the method on the folds in `train` for every grid value: [(value, Fitted)].
Inner CV for outer fold k: for each inner fold j != k, fit on all folds but {k, j}, score on j.
The fit on "all folds but {k, j}" serves outer fold k (scored on j) and outer fold j (scored on
k), so the inner CV costs C(K, 2) paths, not K (K - 1). The outer fits (all folds but k) are
scored on k for every value: the value with the best plain K-fold score is the one the final refit
uses, and fold k's nested score is the one of the outer fit with the value its inner CV picked
(`outer`; the nested procedure scores it on all rows of fold k). Every score goes through the
Ledger, which refuses a fold the fit saw; the choices here use its selection rows.
"""
import itertools
from dataclasses import dataclass, field


@dataclass
class GridCV:
    grid: list  # strongest regularisation first: ties go to it
    per_fold: dict  # outer fold -> value picked by the inner CV
    inner_scores: dict  # outer fold -> {value: inner CV score}
    cv_by_value: dict  # value -> plain K-fold score
    chosen: float  # best K-fold value: the refit's
    outer: dict  # outer fold -> the Fitted scored there (picked value)
    sums: dict = field(default_factory=dict)  # outer fold -> (sum cos, n) of `outer` on all rows (the outer pass)
    notes: list = field(default_factory=list)


def argmax(scores, grid):
    """The grid value with the best score; ties go to the earlier (stronger) value."""
    best = max(scores[v] for v in grid)
    return next(v for v in grid if scores[v] == best)


def grid_cv(ledger, folds, grid, path, method, what, fallback):
    """Nested tuning of one hyper-parameter; `fallback` (nearest grid value) when K < 3 leaves no inner CV."""
    folds = list(folds)
    everything = frozenset(folds)
    K = len(folds)
    inner = {k: {v: [0.0, 0] for v in grid} for k in folds}
    if K >= 3:
        for k, j in itertools.combinations(folds, 2):
            fitted = path(everything - {k, j})
            for outer, scored in ((k, j), (j, k)):
                for (v, _), (s, n) in zip(fitted, ledger.score_all([f for _, f in fitted], scored, "inner")):
                    inner[outer][v][0] += s
                    inner[outer][v][1] += n
    outer_fit, kfold = {}, {v: [0.0, 0] for v in grid}
    for k in folds:
        fitted = path(everything - {k})
        for (v, f), (s, n) in zip(fitted, ledger.score_all([f for _, f in fitted], k, "kfold")):
            outer_fit[k, v] = (f, s, n)
            kfold[v][0] += s
            kfold[v][1] += n
    per_fold, inner_scores, notes = {}, {}, []
    for k in folds:
        if K >= 3:
            ledger.select(k, everything - {k}, f"{what} (inner CV)")
            inner_scores[k] = {v: s / n for v, (s, n) in inner[k].items()}
            per_fold[k] = argmax(inner_scores[k], grid)
        else:
            per_fold[k] = min(grid, key=lambda x: abs(x - fallback))
    if K < 3:
        notes.append(f"only {K} folds: no inner CV possible; outer {method} scores use {what} {per_fold[folds[0]]:g}")
    cv_by_value = {v: s / n for v, (s, n) in kfold.items()}
    return GridCV(
        grid=list(grid),
        per_fold=per_fold,
        inner_scores=inner_scores,
        cv_by_value=cv_by_value,
        chosen=argmax(cv_by_value, grid),
        outer={k: outer_fit[k, per_fold[k]][0] for k in folds},
        notes=notes,
    )
