"""Nested cross-validation of the blend methods over the runs' own folds.

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

Layout: a StackContext holds what every method shares (the data, the ledger, the options, cached
per-model weights and per-fold sums, the record of every fit). Each method has one fit function
(`_fit_<method>(ctx, train, ...)`), used by its outer and inner fits and by the final `_refit`, and
one evaluation (`_evaluate_<method>(ctx)`): a GridCV for the tuned methods (per_dim, ridge),
OuterScores for the others.
"""
import time
from dataclasses import dataclass, field

import numpy as np

from ensemble.data import StackData
from ensemble.grid_cv import GridCV, grid_cv
from ensemble.ledger import Fitted, Ledger, LeakError, fold_rows  # noqa: F401 (LeakError: re-exported)
from ensemble.objective import dimension_grams, mean_gram, model_stats
from ensemble.ridge_stacker import fit_ridge, fold_sums
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


@dataclass
class NestedResult:
    folds: list
    fold_sizes: list
    methods: dict  # method -> {"per_fold": [...], "overall": float}
    single_models: dict  # run name -> {"per_fold": [...], "overall": float}
    chosen_method: str
    final: Fitted  # the chosen method refitted on all OOF rows
    final_linear: Fitted = None  # the best weight method refitted on all rows (= final when that is one)
    shrinkage_grid: list = field(default_factory=list)
    per_dim: GridCV = None  # GridCV of the per-dim shrinkage when per_dim was evaluated
    ridge: GridCV = None  # GridCV of the ridge alpha when ridge was evaluated
    model_weights: dict = field(default_factory=dict)  # per-model weights on all rows
    drop_one: dict = field(default_factory=dict)  # run name -> nested score of the per-model blend without it
    oof_blend: np.ndarray = None  # (N, D) the chosen method's nested OOF predictions, rows as in the data
    notes: list = field(default_factory=list)
    fits: list = field(default_factory=list)  # one entry per per-dim / ridge / lgbm fit: folds, parameter, seconds...
    ledger: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def shrinkage_per_fold(self):
        """Outer fold -> shrinkage picked by the inner CV."""
        return self.per_dim.per_fold if self.per_dim else {}

    @property
    def inner_scores(self):
        """Outer fold -> {shrinkage: inner CV score}."""
        return self.per_dim.inner_scores if self.per_dim else {}

    @property
    def cv_by_shrinkage(self):
        """Shrinkage -> K-fold score (picks the final one)."""
        return self.per_dim.cv_by_value if self.per_dim else {}

    @property
    def chosen_shrinkage(self):
        return self.per_dim.chosen if self.per_dim else None

    @property
    def chosen_alpha(self):
        return self.ridge.chosen if self.ridge is not None else None

    def table(self):
        """Plain-text table of nested scores: methods, then single models."""
        head = "method".ljust(24) + "".join(f"fold {f}".rjust(10) for f in self.folds) + "overall".rjust(10)
        lines = [head]
        for name, s in list(self.methods.items()) + [(f"model:{k}", v) for k, v in self.single_models.items()]:
            mark = " *" if name == self.chosen_method else ""
            lines.append(name[:24].ljust(24) + "".join(f"{x:10.5f}" for x in s["per_fold"]) + f"{s['overall']:10.5f}{mark}")
        return "\n".join(lines)


@dataclass
class Options:
    """How the methods are fitted (nested_cv's keyword arguments, checked)."""
    shrinkage_grid: list  # strongest first
    ridge_alphas: list  # strongest first
    nonneg_model: bool = True
    nonneg_dim: bool = False
    seed: int = 0
    lgbm: dict = field(default_factory=dict)  # keyword arguments of fit_lgbm_stacker
    progress: bool = False
    predict_oof: bool = False  # keep the outer fits that the OOF blend needs (LightGBM's are large)


@dataclass
class StackContext:
    """What every method's evaluation shares: the data and its folds, the ledger, the options, caches
    of the per-model weights and of the per-fold sums, and the records of every fit made."""
    data: StackData
    options: Options
    folds: list = field(init=False)
    everything: frozenset = field(init=False)  # all folds: the final refit's training set
    stats: tuple = field(init=False)  # ensemble.objective.model_stats: the per-model fits' row statistics
    ledger: Ledger = field(init=False)
    fits: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    _model_weights: dict = field(default_factory=dict, repr=False)  # training folds -> (M,) weights
    _grams: dict = field(default=None, repr=False)  # fold -> per-dim Gram sums (per_dim)
    _ridge_sums: object = field(default=None, repr=False)  # FoldSums (ridge)

    def __post_init__(self):
        self.folds = list(self.data.fold_values)
        self.everything = frozenset(self.folds)
        self.stats = model_stats(self.data)
        self.ledger = Ledger(self.data, self.stats)

    def model_weights(self, train):
        """Per-model weights fitted on the folds in `train` (cheap: M parameters on row stats), once per set."""
        if train not in self._model_weights:
            rows = fold_rows(self.data, train)
            self._model_weights[train] = fit_model_weights(self.stats, rows, nonneg=self.options.nonneg_model)
        return self._model_weights[train]

    def mean_gram(self, train):
        """(D, M, M) mean per-dimension Gram matrix over the rows of `train`, from per-fold sums made once."""
        if self._grams is None:
            self._grams = dimension_grams(self.data)
        return mean_gram(self.data, sorted(train), self._grams)

    def ridge_sums(self):
        if self._ridge_sums is None:
            self._ridge_sums = fold_sums(self.data)
        return self._ridge_sums

    def broadcast(self, w):
        """(M,) per-model weights as the (M, D) weight matrix of a blend."""
        return np.repeat(np.asarray(w, dtype=np.float32)[:, None], self.data.dim, axis=1)

    def record(self, method, train, final, **info):
        """One entry of NestedResult.fits."""
        self.fits.append({"method": method, "trained_on": sorted(train), **info, **({"final": True} if final else {})})


@dataclass
class OuterScores:
    """A method without a hyper-parameter: its outer fits' scores and the fits (the fields GridCV has too)."""
    sums: dict  # outer fold -> (sum cos, n) of the fit scored there
    outer: dict  # outer fold -> the Fitted scored there (lgbm: only with predict_oof)
    notes: list = field(default_factory=list)


def nested_cv(data, methods=LINEAR_METHODS, shrinkage_grid=DEFAULT_SHRINKAGE_GRID, choose=None,
              nonneg_model=True, nonneg_dim=False, seed=0, lgbm_options=None, progress=False, refit=True,
              ridge_alphas=DEFAULT_RIDGE_ALPHAS, drop_one=False, predict_oof=False):
    """Nested CV of `methods` on a StackData; returns a NestedResult with the chosen method refitted.

    `choose`: force the chosen method (it must be in `methods`); default: the best nested score
    (ties go to the simpler method, in the order of METHODS). `drop_one`: also score the per-model
    blend without each model. `predict_oof`: also the chosen method's nested OOF predictions.
    """
    t_start = time.perf_counter()
    methods = _check_methods(methods, choose, len(data.fold_values))
    options = Options(_grid(shrinkage_grid, "shrinkage"), _grid(ridge_alphas, "ridge alpha"), nonneg_model,
                      nonneg_dim, seed, dict(lgbm_options or {}), progress, predict_oof)
    if "ridge" in methods and min(options.ridge_alphas) <= 0:
        raise ValueError(f"ridge alphas must be > 0, got {options.ridge_alphas}")
    ctx = StackContext(data, options)
    evaluated = {}
    for method in methods:  # in the order of METHODS: the fits and ledger records come in that order
        outcome = EVALUATE[method](ctx)
        if outcome is not None:
            evaluated[method] = outcome
            ctx.notes += outcome.notes
    scores = {m: _summary(e.sums) for m, e in evaluated.items()}
    if choose is None:
        best = max(s["overall"] for s in scores.values())
        choose = next(m for m, s in scores.items() if s["overall"] == best)
    oof_blend = _oof_blend(ctx, evaluated[choose].outer) if predict_oof else None
    drop = _drop_one(ctx) if drop_one else {}
    final, final_linear = _final_fits(ctx, choose, evaluated, scores) if refit else (None, None)
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
    )


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


def _summary(sums):
    """{fold: (sum, n)} -> {"per_fold": [...], "overall": x} in fold order."""
    folds = sorted(sums)
    total = sum(sums[f][0] for f in folds)
    count = sum(sums[f][1] for f in folds)
    return {"per_fold": [sums[f][0] / sums[f][1] for f in folds], "overall": total / count}


def _single_model_scores(ctx):
    """{run name: summary}: a[i, m] of the row stats is already model m's cosine on row i."""
    a, data = ctx.stats[0], ctx.data
    return {name: _summary({f: (float(a[slice(*data.bounds[f]), mi].sum()), data.count([f])) for f in ctx.folds})
            for mi, name in enumerate(data.names)}


# ------------------------------------------------------------------ one fit of each method on a set of folds

def _fit_equal(ctx):
    return Fitted("equal", frozenset(), ctx.broadcast(fit_equal_weights(ctx.data.n_models)))


def _fit_per_model(ctx, train):
    return Fitted("per_model", frozenset(train), ctx.broadcast(ctx.model_weights(train)))


def _fit_per_dim(ctx, train, shrinkage, gram, init=None, final=False):
    """Per-dimension weights on `train`, shrunk toward its per-model weights; `init` a warm start.
    The final fit's weights are rescaled to readable numbers (the same blend)."""
    W, info = fit_dimension_weights_on(ctx.data, sorted(train), ctx.model_weights(train), shrinkage,
                                       nonneg=ctx.options.nonneg_dim, init=init, grams=gram)
    ctx.record("per_dim", train, final, shrinkage=shrinkage, rows=ctx.data.count(train),
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
    stacker = fit_lgbm_stacker(ctx.data, sorted(train), seed=o.seed, progress=_dim_bar(o.progress, desc), **o.lgbm)
    rounds = {} if final else {"mean_rounds": float(np.mean(stacker.best_rounds))}
    ctx.record("lgbm", train, final, rows=ctx.data.count(train), seconds=round(time.perf_counter() - t0, 3), **rounds)
    return Fitted("lgbm", frozenset(train), stacker=stacker)


# ------------------------------------------------------------------ each method's nested scores

def _score_outer(ctx, outer):
    """OuterScores of {outer fold k: a fit that did not see k}, each scored on its fold."""
    return OuterScores({k: ctx.ledger.score(fitted, k, "outer") for k, fitted in outer.items()}, outer)


def _evaluate_equal(ctx):
    equal = _fit_equal(ctx)
    return _score_outer(ctx, {k: equal for k in ctx.folds})


def _evaluate_per_model(ctx):
    return _score_outer(ctx, {k: _fit_per_model(ctx, ctx.everything - {k}) for k in ctx.folds})


def _evaluate_per_dim(ctx):
    """GridCV of the shrinkage: inner CV per outer fold, outer scores with the value it picked."""
    grid = ctx.options.shrinkage_grid
    bar = _progress(ctx.options.progress, _paths(len(ctx.folds)) * len(grid), "per-dim fits")

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
    bar = _progress(ctx.options.progress, _paths(len(ctx.folds)), "ridge fits")

    def path(train):
        fitted = _fit_ridge(ctx, train, alphas)
        bar.update(1)
        return [(f.stacker.alpha, f) for f in fitted]

    tuned = grid_cv(ctx.ledger, ctx.folds, alphas, path, "ridge", "alpha", FALLBACK_RIDGE_ALPHA)
    bar.close()
    return tuned


def _evaluate_lgbm(ctx):
    """Outer scores of the LightGBM stacker (no hyper-parameter grid); None (and a note) with too few folds."""
    K = len(ctx.folds)
    if K < LGBM_MIN_FOLDS:
        ctx.notes.append(f"lgbm skipped: it needs >= {LGBM_MIN_FOLDS} folds (an early-stopping fold inside each "
                         f"training set), got {K}")
        return None
    sums, outer = {}, {}
    for k in ctx.folds:
        fitted = _fit_lgbm(ctx, ctx.everything - {k}, f"lgbm fold {k}")
        sums[k] = ctx.ledger.score(fitted, k, "outer")
        if ctx.options.predict_oof:  # boosters are large: kept only when the OOF blend may need them
            outer[k] = fitted
    return OuterScores(sums, outer)


EVALUATE = {"equal": _evaluate_equal, "per_model": _evaluate_per_model, "per_dim": _evaluate_per_dim,
            "ridge": _evaluate_ridge, "lgbm": _evaluate_lgbm}


def _paths(K):
    """Fits of one hyper-parameter path grid_cv makes: C(K, 2) inner (none for K < 3) + K outer."""
    return (K * (K - 1) // 2 if K >= 3 else 0) + K


# ------------------------------------------------------------------ after the scores

def _oof_blend(ctx, outer):
    """(N, D) float32: each fold predicted by the chosen method's outer fit that did not see it."""
    data = ctx.data
    out = np.empty((data.n_rows, data.dim), dtype=np.float32)
    for k, fitted in outer.items():
        a, b = data.bounds[k]
        out[a:b] = ctx.ledger.predict(fitted, k, "oof_blend")
    return out


def _drop_one(ctx):
    """{run name: nested score of the per-model blend fitted without it} (its weight held at 0)."""
    data, stats, out = ctx.data, ctx.stats, {}
    M = data.n_models
    if M < 2:
        return out
    for mi, name in enumerate(data.names):
        keep = [j for j in range(M) if j != mi]
        sub = (stats[0][:, keep], stats[1][:, keep][:, :, keep])
        sums = {}
        for k in ctx.folds:
            train = ctx.everything - {k}
            w = np.zeros(M, dtype=np.float32)
            w[keep] = fit_model_weights(sub, fold_rows(data, train), nonneg=ctx.options.nonneg_model)
            sums[k] = ctx.ledger.score(Fitted(f"per_model without {name}", train, ctx.broadcast(w)), k, "drop_one")
        out[name] = _summary(sums)
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


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(enabled, total, desc):
    if not enabled or total == 0:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="fit")


def _dim_bar(enabled, desc):
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda it: tqdm(it, desc=desc, unit="dim", leave=False)
