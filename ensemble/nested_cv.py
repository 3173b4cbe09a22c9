"""Nested cross-validation of the blend methods over the runs' folds.

For every outer fold k, each method is fitted on the OOF rows of the other folds only and
scored on fold k; a method's nested score is the mean cosine over all rows scored that way
(the stacked OOF cosine), reported per fold and overall next to every single model's OOF cosine.

Hyper-parameters (the per-dimension shrinkage, the ridge alpha) are chosen for outer fold k by
an inner CV on the other folds (`ensemble.grid_cv`); the final value is the one with the best
plain K-fold score, and the chosen method is refitted on all OOF rows.

Leakage is ruled out by construction (`ensemble.ledger`): every fitted blend carries the folds
it was trained on and the ledger refuses to score or predict a fold in that set, or to tune
outer fold k with scores that involve k. Its records come back in the result so tests can check them.

With `predict_oof`, the chosen method's outer fits predict their held-out folds (through the
ledger): the per-image nested OOF blend. With `drop_one`, each model's marginal value: the nested
score of the per-model blend fitted without it.

Passes over the rows (a StackData in memory or the runs' files, ensemble.source.RunFiles): one
statistics pass (`ensemble.fold_stats`) gathers per fold what every fit needs; the fits, the
inner-CV and K-fold choices then work from those statistics and the in-memory selection rows (the
per-dim fits' sample: every row up to 200,000); one outer pass scores every method's outer fits on
all rows of their folds (the nested scores); with `predict_oof` one more pass writes the OOF blend.

Layout: a StackContext (ensemble.stack_context) holds what every method shares (the data, the
statistics, the ledger, the options, cached per-model weights, the record of every fit). Each
method has one fit function (`_fit_<method>(ctx, train, ...)`), used by its outer and inner fits
and by the final `_refit`, and one evaluation (`_evaluate_<method>(ctx)`): a GridCV for the tuned
methods (per_dim, ridge), OuterScores for the others; both hold the outer fits, which the outer pass scores.
"""
import time

import numpy as np

from core.io import npy_writer
from ensemble.fold_stats import SAMPLE_ROWS
from ensemble.grid_cv import grid_cv
from ensemble.ledger import Fitted, LeakError, Ledger, fold_rows  # noqa: F401 (re-exported)
from ensemble.nested_result import NestedResult, dim_bar, progress_bar, summary
from ensemble.ridge_stacker import fit_ridge
from ensemble.stack_context import Options, OuterScores, StackContext
from ensemble.weight_fits import fit_dimension_weights_on, fit_equal_weights, fit_model_weights

DEFAULT_SHRINKAGE_GRID = (10.0, 1.0, 0.1, 0.01, 0.0)
FALLBACK_SHRINKAGE = 0.1  # used for the outer scores when there are too few folds for an inner CV
# ridge alpha is scikit-learn's (on sums over rows, not means): 0.3-3 won on synthetic sets of 3,000-20,000 rows
DEFAULT_RIDGE_ALPHAS = (100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1)
FALLBACK_RIDGE_ALPHA = 3.0
LINEAR_METHODS = ("equal", "per_model", "per_dim")  # blends stored as an (M, D) weight matrix (weights.npz)
AUTO_METHODS = LINEAR_METHODS + ("ridge",)  # `auto` without LightGBM
METHODS = AUTO_METHODS + ("lgbm",)
LGBM_MIN_FOLDS = 3  # one fold of each training set stops the boosting early


def nested_cv(data, methods=LINEAR_METHODS, shrinkage_grid=DEFAULT_SHRINKAGE_GRID, choose=None,
              nonneg_model=True, nonneg_dim=False, seed=0, lgbm_options=None, progress=False, refit=True,
              ridge_alphas=DEFAULT_RIDGE_ALPHAS, drop_one=False, predict_oof=False, sample_rows=SAMPLE_ROWS,
              oof_blend_path=None):
    """Nested CV of `methods` on a StackData or RunFiles; returns a NestedResult with the chosen method refitted.

    `choose`: force the chosen method (it must be in `methods`); default: the best nested score
    (ties go to the simpler method, in the order of METHODS). `drop_one`: also score the per-model
    blend without each model. `predict_oof`: also the chosen method's nested OOF predictions, in memory or
    written to `oof_blend_path`. `sample_rows`: the selection rows' count (ensemble.fold_stats).
    """
    t_start = time.perf_counter()
    methods = _check_methods(methods, choose, len(data.fold_values))
    options = Options(_grid(shrinkage_grid, "shrinkage"), _grid(ridge_alphas, "ridge alpha"), nonneg_model,
                      nonneg_dim, seed, dict(lgbm_options or {}), progress, int(sample_rows), oof_blend_path)
    if "ridge" in methods and min(options.ridge_alphas) <= 0:
        raise ValueError(f"ridge alphas must be > 0, got {options.ridge_alphas}")
    ctx = StackContext(data, options, methods)
    evaluated = {}
    for method in methods:  # in the order of METHODS: the fits and ledger records come in that order
        outcome = _timed(ctx, method, EVALUATE[method], ctx)
        if outcome is not None:
            evaluated[method] = outcome
            ctx.notes += outcome.notes
    _timed(ctx, "outer pass", _score_outer, ctx, evaluated)
    scores = {m: summary(e.sums) for m, e in evaluated.items()}
    if choose is None:
        best = max(s["overall"] for s in scores.values())
        choose = next(m for m, s in scores.items() if s["overall"] == best)
    oof_blend = _timed(ctx, "oof blend", _oof_blend, ctx, evaluated[choose].outer) if predict_oof else None
    drop = _timed(ctx, "drop_one", _drop_one, ctx) if drop_one else {}
    final, final_linear = _timed(ctx, "refit", _final_fits, ctx, choose, evaluated, scores) if refit else (None, None)
    return NestedResult(
        folds=ctx.folds,
        fold_sizes=[data.count([f]) for f in ctx.folds],
        methods=scores,
        single_models=_single_model_scores(ctx),
        chosen_method=choose,
        final=final,
        final_linear=final_linear,
        shrinkage_grid=options.shrinkage_grid,
        per_dim=evaluated.get("per_dim"),
        ridge=evaluated.get("ridge"),
        model_weights={"all": ctx.model_weights(ctx.everything).tolist()},
        drop_one=drop,
        oof_blend=oof_blend,
        notes=ctx.notes,
        fits=ctx.fits,
        ledger=ctx.ledger.records,
        seconds=time.perf_counter() - t_start,
        timings=ctx.timings,
        phases=ctx.phases,
        selection_rows=ctx.selection.n_rows,
    )


def _timed(ctx, key, fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    ctx.timings[key] = round(time.perf_counter() - t0, 2)
    ctx.phases.append((key, t0, time.perf_counter()))
    return out


def _check_methods(methods, choose, n_folds):
    """`methods` in the order of METHODS; ValueError for unknown ones, a `choose` not among them, too few folds."""
    requested = set(methods)
    unknown = requested - set(METHODS)
    methods = [m for m in METHODS if m in requested]
    if unknown or not methods:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    if choose is not None and choose not in methods:
        raise ValueError(f"method {choose!r} was not evaluated (methods: {methods})")
    if n_folds < 2:
        raise ValueError(f"nested CV needs at least 2 folds; the OOF rows have {n_folds}")
    if choose == "lgbm" and n_folds < LGBM_MIN_FOLDS:
        raise ValueError(f"lgbm was requested but could not be evaluated with {n_folds} folds")
    return methods


def _grid(values, what):
    grid = sorted({float(x) for x in values}, reverse=True)  # strongest regularisation first
    if not grid:
        raise ValueError(f"empty {what} grid")
    return grid


def _single_model_scores(ctx):
    """{run name: summary}: a[i, m] of the row stats is already model m's cosine on row i."""
    a, data = ctx.stats.model[0], ctx.data
    rows = {f: data.rows_of([f]) for f in ctx.folds}
    return {name: summary({f: (float(a[rows[f], mi].sum()), len(rows[f])) for f in ctx.folds})
            for mi, name in enumerate(data.names)}


# ------------------------------------------------------------------ one fit of each method on a set of folds

def _fit_equal(ctx):
    return Fitted("equal", frozenset(), ctx.broadcast(fit_equal_weights(ctx.data.n_models)))


def _fit_per_model(ctx, train):
    return Fitted("per_model", frozenset(train), ctx.broadcast(ctx.model_weights(train)))


def _fit_per_dim(ctx, train, shrinkage, gram, init=None, final=False):
    """Per-dimension weights on the selection rows of `train`, shrunk toward its per-model weights (fitted on all
    its rows); `gram` the preconditioner (all rows); `init` a warm start.
    The final fit's weights are rescaled to readable numbers (the same blend)."""
    W, info = fit_dimension_weights_on(ctx.selection, sorted(train), ctx.model_weights(train), shrinkage,
                                       nonneg=ctx.options.nonneg_dim, init=init, grams=gram)
    ctx.record("per_dim", train, final, shrinkage=shrinkage, rows=ctx.selection.count(train),
               seconds=round(info.seconds, 3), evaluations=info.evaluations, iterations=info.iterations,
               train_cosine=info.mean_cosine)
    return Fitted("per_dim", frozenset(train), rescale_weights(W) if final else W, shrinkage=shrinkage)


def _fit_ridge(ctx, train, alphas, final=False):
    """[Fitted ridge stacker per alpha] on `train`, from the per-fold sums."""
    sums = ctx.ridge_sums()
    t0 = time.perf_counter()
    stackers = fit_ridge(sums, train, alphas, ctx.data.names)
    ctx.record("ridge", train, final, alphas=alphas, rows=ctx.data.count(train),
               seconds=round(time.perf_counter() - t0, 3))
    return [Fitted("ridge", frozenset(train), stacker=st) for st in stackers]


def _fit_lgbm(ctx, train, desc, final=False):
    from ensemble.lgbm_stacker import fit_lgbm_stacker

    o = ctx.options
    t0 = time.perf_counter()
    stacker = fit_lgbm_stacker(ctx.selection, sorted(train), seed=o.seed, progress=dim_bar(o.progress, desc), **o.lgbm)
    rounds = {} if final else {"mean_rounds": float(np.mean(stacker.best_rounds))}
    ctx.record("lgbm", train, final, rows=ctx.selection.count(train), seconds=round(time.perf_counter() - t0, 3),
               **rounds)
    return Fitted("lgbm", frozenset(train), stacker=stacker)


# ------------------------------------------------------------------ each method's nested scores

def _evaluate_equal(ctx):
    equal = _fit_equal(ctx)
    return OuterScores({k: equal for k in ctx.folds})


def _evaluate_per_model(ctx):
    return OuterScores({k: _fit_per_model(ctx, ctx.everything - {k}) for k in ctx.folds})


def _evaluate_per_dim(ctx):
    """GridCV of the shrinkage: inner CV per outer fold, outer scores with the value it picked."""
    grid = ctx.options.shrinkage_grid
    bar = progress_bar(ctx.options.progress, _paths(len(ctx.folds)) * len(grid), "per-dim fits")

    def path(train):
        """Fits on `train` along the shrinkage grid, strongest first, each warm-started from the last."""
        gram, fitted, out = ctx.mean_gram(train), None, []
        for lam in grid:
            fitted = _fit_per_dim(ctx, train, lam, gram, init=fitted.weights if fitted else None)
            bar.update(1)
            out.append((lam, fitted))
        return out

    tuned = grid_cv(ctx.ledger, ctx.folds, grid, path, "per_dim", "shrinkage", FALLBACK_SHRINKAGE)
    bar.close()
    return tuned


def _evaluate_ridge(ctx):
    """GridCV of the ridge alpha (every alpha of a training set from one set of sums)."""
    alphas = ctx.options.ridge_alphas
    bar = progress_bar(ctx.options.progress, _paths(len(ctx.folds)), "ridge fits")

    def path(train):
        fitted = _fit_ridge(ctx, train, alphas)
        bar.update(1)
        return [(f.stacker.alpha, f) for f in fitted]

    tuned = grid_cv(ctx.ledger, ctx.folds, alphas, path, "ridge", "alpha", FALLBACK_RIDGE_ALPHA)
    bar.close()
    return tuned


def _evaluate_lgbm(ctx):
    """The LightGBM stacker's outer fits (no hyper-parameter grid); None (and a note) with too few folds."""
    K = len(ctx.folds)
    if K < LGBM_MIN_FOLDS:
        ctx.notes.append(f"lgbm skipped: it needs >= {LGBM_MIN_FOLDS} folds (an early-stopping fold inside each "
                         f"training set), got {K}")
        return None
    return OuterScores({k: _fit_lgbm(ctx, ctx.everything - {k}, f"lgbm fold {k}") for k in ctx.folds})


EVALUATE = {"equal": _evaluate_equal, "per_model": _evaluate_per_model, "per_dim": _evaluate_per_dim,
            "ridge": _evaluate_ridge, "lgbm": _evaluate_lgbm}


def _paths(K):
    """Fits of one hyper-parameter path grid_cv makes: C(K, 2) inner (none for K < 3) + K outer."""
    return (K * (K - 1) // 2 if K >= 3 else 0) + K


# ------------------------------------------------------------------ after the scores

def _score_outer(ctx, evaluated):
    """Every method's outer fits scored on all rows of their folds, in one pass: each outcome's `sums`."""
    pairs = [(m, k, fitted) for m, e in evaluated.items() for k, fitted in e.outer.items()]
    sums = ctx.ledger.score_outer([(fitted, k) for _, k, fitted in pairs], "outer")
    for (m, k, _), s in zip(pairs, sums):
        evaluated[m].sums[k] = s


def _oof_blend(ctx, outer):
    """(N, D) float32 (or the file it was written to): each row predicted by the chosen method's outer fit that
    did not see its fold."""
    data, path = ctx.data, ctx.options.oof_blend_path
    if path is not None:
        with npy_writer(path, (data.n_rows, data.dim)) as write:
            ctx.ledger.predict_outer(outer, "oof_blend", write)
        return path
    out = np.empty((data.n_rows, data.dim), dtype=np.float32)

    def sink(start, stop, block):
        out[start:stop] = block

    ctx.ledger.predict_outer(outer, "oof_blend", sink)
    return out


def _drop_one(ctx):
    """{run name: nested score of the per-model blend fitted without it} (its weight held at 0)."""
    data, stats, out = ctx.data, ctx.stats.model, {}
    M = data.n_models
    if M < 2:
        return out
    for mi, name in enumerate(data.names):
        keep = [j for j in range(M) if j != mi]
        sub = (stats[0][:, keep], stats[1][:, keep][:, :, keep])
        pairs = []
        for k in ctx.folds:
            train = ctx.everything - {k}
            w = np.zeros(M, dtype=np.float32)
            w[keep] = fit_model_weights(sub, data.rows_of(train), nonneg=ctx.options.nonneg_model)
            pairs.append((Fitted(f"per_model without {name}", train, ctx.broadcast(w)), k))
        out[name] = summary(dict(zip(ctx.folds, ctx.ledger.score_outer(pairs, "drop_one"))))
    return out


def _final_fits(ctx, chosen, evaluated, scores):
    """(the chosen method refitted on all rows, the best weight method's refit: the weights.npz fallback).

    A weight method chosen is its own fallback; None when no weight method was evaluated."""
    final = _refit(ctx, chosen, evaluated)
    if chosen in LINEAR_METHODS:
        return final, final
    linear = [m for m in evaluated if m in LINEAR_METHODS]
    if not linear:
        return final, None
    best = max(linear, key=lambda m: (scores[m]["overall"], -linear.index(m)))
    return final, _refit(ctx, best, evaluated)


def _refit(ctx, method, evaluated):
    """`method` fitted on all OOF rows, with the hyper-parameter value of the best K-fold score."""
    everything = ctx.everything
    if method == "equal":
        return _fit_equal(ctx)
    if method == "per_model":
        return _fit_per_model(ctx, everything)
    if method == "per_dim":
        return _fit_per_dim(ctx, everything, evaluated["per_dim"].chosen, ctx.mean_gram(everything), final=True)
    if method == "ridge":
        (fitted,) = _fit_ridge(ctx, everything, [evaluated["ridge"].chosen], final=True)
        return fitted
    if method == "lgbm":
        return _fit_lgbm(ctx, everything, "lgbm refit", final=True)
    raise ValueError(f"unknown method {method!r}")


def rescale_weights(W):
    """The same blend with readable numbers: a global scale leaves the normalised blend unchanged,
    so scale W to a mean per-dimension weight sum of 1."""
    total = float(np.mean(np.sum(W, axis=0)))
    return (W / total).astype(np.float32) if total > 1e-12 else W
