"""Nested cross-validation of the blend methods over the runs' own folds.

For every outer fold k, each method is fitted on the OOF rows of the other folds only and
scored on fold k; a method's nested score is the mean cosine over all rows scored that way
(the stacked OOF cosine), reported per fold and overall next to every single model's OOF cosine.

The per-dimension method's shrinkage is chosen for outer fold k by an inner CV on the other
folds: for each inner fold j != k, fit on the folds other than {k, j}, score on j. The fit on
"all folds but {k, j}" serves both outer fold k (scored on j) and outer fold j (scored on k), so
the inner CV costs C(K, 2) fits per grid value, not K (K - 1). The final shrinkage is the one
with the best plain K-fold score (fits on all folds but k, scored on k), and the chosen method
is refitted on all OOF rows.

Leakage is ruled out by construction: every fitted blend carries the set of folds it was
trained on (`Fitted.trained_on`), `Ledger.score` refuses to score a fold in that set, and
`Ledger.select` refuses to pick a hyper-parameter for outer fold k with scores that involve k.
The ledger's records come back in the result so tests can check them.
"""
import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from ensemble.objective import cosine_sum, dimension_grams, mean_gram, model_stats
from ensemble.stackers import fit_dimension_weights_on, fit_equal_weights, fit_model_weights

DEFAULT_SHRINKAGE_GRID = (10.0, 1.0, 0.1, 0.01, 0.0)
FALLBACK_SHRINKAGE = 0.1  # used for the outer scores when there are too few folds for an inner CV
LINEAR_METHODS = ("equal", "per_model", "per_dim")
METHODS = LINEAR_METHODS + ("lgbm",)


class LeakError(AssertionError):
    """A blend was about to be scored on (or tuned with) rows it was trained on."""


@dataclass
class Fitted:
    method: str
    trained_on: frozenset
    weights: np.ndarray = None  # (M, D) float32 for the linear methods
    stacker: object = None  # LgbmStacker for "lgbm"
    shrinkage: float = None


class Ledger:
    """Scores fitted blends on folds, refusing any fold the blend saw; keeps a record of each."""

    def __init__(self, data, stats):
        self.data = data
        self.stats = stats
        self.records = []

    def score(self, fitted, fold, purpose):
        if fold in fitted.trained_on:
            raise LeakError(f"{fitted.method} fitted on folds {sorted(fitted.trained_on)} cannot be scored on fold {fold}")
        self.records.append({"kind": "score", "purpose": purpose, "method": fitted.method, "shrinkage": fitted.shrinkage,
                             "trained_on": sorted(fitted.trained_on), "scored_fold": fold})
        if fitted.method == "lgbm":
            from ensemble.lgbm_stacker import lgbm_cosine_sum

            return lgbm_cosine_sum(fitted.stacker, self.data, [fold])
        return linear_cosine_sum(self.data, self.stats, fitted.weights, fold)

    def select(self, outer_fold, used_folds, purpose):
        used = set(used_folds)
        if outer_fold in used:
            raise LeakError(f"{purpose} for outer fold {outer_fold} would use scores involving that fold")
        self.records.append({"kind": "select", "purpose": purpose, "outer_fold": outer_fold, "used_folds": sorted(used)})


def fold_rows(data, folds):
    return np.concatenate([np.arange(a, b) for a, b in data.segments(folds)])


def linear_cosine_sum(data, stats, W, fold):
    """(sum cos, n) of linear weights W on one fold; per-model weights use the cheap row stats."""
    W = np.asarray(W, dtype=np.float32)
    if stats is not None and np.all(W == W[:, :1]):
        a, C = stats
        a_b, e = data.bounds[fold]
        w = W[:, 0].astype(np.float64)
        Cw = C[a_b:e] @ w
        cos = (a[a_b:e] @ w) / np.sqrt(np.maximum(Cw @ w, 1e-24))
        return float(cos.sum()), e - a_b
    return cosine_sum(data, W, [fold])


@dataclass
class NestedResult:
    folds: list
    fold_sizes: list
    methods: dict  # method -> {"per_fold": [...], "overall": float}
    single_models: dict  # run name -> {"per_fold": [...], "overall": float}
    chosen_method: str
    final: Fitted  # the chosen method refitted on all OOF rows
    final_linear: Fitted = None  # the best linear method refitted on all rows (= final when that is linear)
    shrinkage_grid: list = field(default_factory=list)
    shrinkage_per_fold: dict = field(default_factory=dict)  # outer fold -> shrinkage picked by the inner CV
    inner_scores: dict = field(default_factory=dict)  # outer fold -> {shrinkage: inner CV score}
    cv_by_shrinkage: dict = field(default_factory=dict)  # shrinkage -> K-fold score (picks the final one)
    chosen_shrinkage: float = None
    model_weights: dict = field(default_factory=dict)  # per-model weights on all rows
    notes: list = field(default_factory=list)
    fits: list = field(default_factory=list)  # one entry per per-dim / lgbm fit: folds, shrinkage, seconds...
    ledger: list = field(default_factory=list)
    seconds: float = 0.0

    def table(self):
        """Plain-text table of nested scores: methods, then single models."""
        head = "method".ljust(24) + "".join(f"fold {f}".rjust(10) for f in self.folds) + "overall".rjust(10)
        lines = [head]
        for name, s in list(self.methods.items()) + [(f"model:{k}", v) for k, v in self.single_models.items()]:
            mark = " *" if name == self.chosen_method else ""
            lines.append(name[:24].ljust(24) + "".join(f"{x:10.5f}" for x in s["per_fold"]) + f"{s['overall']:10.5f}{mark}")
        return "\n".join(lines)


def _summary(sums):
    """{fold: (sum, n)} -> {"per_fold": [...], "overall": x} in fold order."""
    folds = sorted(sums)
    total = sum(sums[f][0] for f in folds)
    count = sum(sums[f][1] for f in folds)
    return {"per_fold": [sums[f][0] / sums[f][1] for f in folds], "overall": total / count}


def nested_cv(data, methods=LINEAR_METHODS, shrinkage_grid=DEFAULT_SHRINKAGE_GRID, choose=None,
              nonneg_model=True, nonneg_dim=False, seed=0, lgbm_options=None, progress=False, refit=True):
    """Nested CV of `methods` on a StackData; returns a NestedResult with the chosen method refitted.

    `choose`: force the chosen method (it must be in `methods`); default: the best nested score
    (ties go to the simpler method, in the order of METHODS).
    """
    t_start = time.perf_counter()
    requested = set(methods)
    unknown = requested - set(METHODS)
    methods = [m for m in METHODS if m in requested]
    if unknown or not methods:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    if choose is not None and choose not in methods:
        raise ValueError(f"method {choose!r} was not evaluated (methods: {methods})")
    folds = list(data.fold_values)
    K = len(folds)
    if K < 2:
        raise ValueError(f"nested CV needs at least 2 folds; the OOF rows have {K}")
    everything = frozenset(folds)
    grid = sorted({float(x) for x in shrinkage_grid}, reverse=True)
    if not grid:
        raise ValueError("empty shrinkage grid")
    notes = []

    stats = model_stats(data)
    ledger = Ledger(data, stats)
    a = stats[0]

    # single models: a[i, m] is already model m's cosine on row i
    single = {}
    for mi, name in enumerate(data.names):
        single[name] = _summary({f: (float(a[slice(*data.bounds[f]), mi].sum()), data.bounds[f][1] - data.bounds[f][0])
                                 for f in folds})

    # per-model weights for every training set that is needed (cheap: M parameters on row stats)
    model_w = {}

    def model_weights(train):
        if train not in model_w:
            model_w[train] = fit_model_weights(stats, fold_rows(data, train), nonneg=nonneg_model)
        return model_w[train]

    M, D = data.n_models, data.dim
    results = {}
    fits = []

    def broadcast(w):
        return np.repeat(np.asarray(w, dtype=np.float32)[:, None], D, axis=1)

    if "equal" in methods:
        eq = Fitted("equal", frozenset(), broadcast(fit_equal_weights(M)))
        results["equal"] = _summary({k: ledger.score(eq, k, "outer") for k in folds})

    if "per_model" in methods:
        sums = {}
        for k in folds:
            train = everything - {k}
            sums[k] = ledger.score(Fitted("per_model", train, broadcast(model_weights(train))), k, "outer")
        results["per_model"] = _summary(sums)

    shrink_per_fold, inner_scores, cv_by_shrinkage, chosen_shrinkage = {}, {}, {}, None
    n_dim_fits = (K * (K - 1) // 2 * len(grid) if K >= 3 else 0) + K * len(grid)
    bar = _progress(progress, n_dim_fits if "per_dim" in methods else 0, "per-dim fits")
    grams = dimension_grams(data) if "per_dim" in methods else None

    def dim_path(train):
        """Fits on `train` along the shrinkage grid, strongest first, each warm-started from the last."""
        prior = model_weights(train)
        n = data.count(train)
        g = mean_gram(data, sorted(train), grams)
        W = None
        for lam in grid:
            W, info = fit_dimension_weights_on(data, sorted(train), prior, lam, nonneg=nonneg_dim, init=W, grams=g)
            fits.append({"method": "per_dim", "trained_on": sorted(train), "shrinkage": lam, "rows": n,
                         "seconds": round(info.seconds, 3), "evaluations": info.evaluations,
                         "iterations": info.iterations, "train_cosine": info.mean_cosine})
            bar.update(1)
            yield lam, Fitted("per_dim", frozenset(train), W, shrinkage=lam)

    if "per_dim" in methods:
        # inner CV: fits on all folds but {k, j}, scored on j for outer fold k and on k for outer fold j
        inner = {k: {lam: [0.0, 0] for lam in grid} for k in folds}
        if K >= 3:
            for k, j in itertools.combinations(folds, 2):
                for lam, fitted in dim_path(everything - {k, j}):
                    for outer, scored in ((k, j), (j, k)):
                        s, n = ledger.score(fitted, scored, "inner")
                        inner[outer][lam][0] += s
                        inner[outer][lam][1] += n
        # plain K-fold over the grid: outer fits (all folds but k), scored on k
        outer_fit = {}
        kfold = {lam: [0.0, 0] for lam in grid}
        for k in folds:
            for lam, fitted in dim_path(everything - {k}):
                s, n = ledger.score(fitted, k, "kfold")
                outer_fit[k, lam] = (s, n)
                kfold[lam][0] += s
                kfold[lam][1] += n
        sums = {}
        for k in folds:
            if K >= 3:
                ledger.select(k, set(folds) - {k}, "shrinkage (inner CV)")
                inner_scores[k] = {lam: v[0] / v[1] for lam, v in inner[k].items()}
                lam_k = _argmax(inner_scores[k], grid)
            else:
                lam_k = min(grid, key=lambda x: abs(x - FALLBACK_SHRINKAGE))
            shrink_per_fold[k] = lam_k
            sums[k] = outer_fit[k, lam_k]  # the fit on all folds but k with lam_k, scored on k above
        if K < 3:
            notes.append(f"only {K} folds: no inner CV possible; outer per-dim scores use shrinkage {shrink_per_fold[folds[0]]}")
        results["per_dim"] = _summary(sums)
        cv_by_shrinkage = {lam: v[0] / v[1] for lam, v in kfold.items()}
        chosen_shrinkage = _argmax(cv_by_shrinkage, grid)
    bar.close()

    lgbm_opts = dict(lgbm_options or {})
    if "lgbm" in methods:
        from ensemble.lgbm_stacker import fit_lgbm_stacker

        if K < 3:
            notes.append(f"lgbm skipped: it needs >= 3 folds (an early-stopping fold inside each training set), got {K}")
            methods.remove("lgbm")
        else:
            sums = {}
            for k in folds:
                train = everything - {k}
                t0 = time.perf_counter()
                stacker = fit_lgbm_stacker(data, sorted(train), seed=seed, progress=_dim_bar(progress, f"lgbm fold {k}"),
                                           **lgbm_opts)
                fits.append({"method": "lgbm", "trained_on": sorted(train), "rows": data.count(train),
                             "seconds": round(time.perf_counter() - t0, 3),
                             "mean_rounds": float(np.mean(stacker.best_rounds))})
                sums[k] = ledger.score(Fitted("lgbm", train, stacker=stacker), k, "outer")
            results["lgbm"] = _summary(sums)
        if choose == "lgbm" and "lgbm" not in results:
            raise ValueError(f"lgbm was requested but could not be evaluated with {K} folds")

    if choose is None:
        best = max(results[m]["overall"] for m in methods)
        choose = next(m for m in methods if results[m]["overall"] == best)

    final = final_linear = None
    if refit:
        final = _refit(data, choose, everything, model_weights, broadcast, chosen_shrinkage, nonneg_dim,
                       grams, seed, lgbm_opts, progress, fits)
        final_linear = final
        if choose not in LINEAR_METHODS:
            # a numpy-only fallback beside the chosen non-linear stacker: the best linear method
            linear = [m for m in methods if m in LINEAR_METHODS]
            if linear:
                best_linear = max(linear, key=lambda m: (results[m]["overall"], -linear.index(m)))
                final_linear = _refit(data, best_linear, everything, model_weights, broadcast, chosen_shrinkage,
                                      nonneg_dim, grams, seed, lgbm_opts, progress, fits)

    return NestedResult(
        folds=folds,
        fold_sizes=[data.bounds[f][1] - data.bounds[f][0] for f in folds],
        methods={m: results[m] for m in methods if m in results},
        single_models=single,
        chosen_method=choose,
        final=final,
        final_linear=final_linear,
        shrinkage_grid=grid,
        shrinkage_per_fold=shrink_per_fold,
        inner_scores=inner_scores,
        cv_by_shrinkage=cv_by_shrinkage,
        chosen_shrinkage=chosen_shrinkage,
        model_weights={"all": model_weights(everything).tolist()},
        notes=notes,
        fits=fits,
        ledger=ledger.records,
        seconds=time.perf_counter() - t_start,
    )


def _refit(data, method, everything, model_weights, broadcast, shrinkage, nonneg_dim, grams, seed, lgbm_opts,
           progress, fits):
    M = data.n_models
    if method == "equal":
        return Fitted("equal", frozenset(), broadcast(fit_equal_weights(M)))
    if method == "per_model":
        return Fitted("per_model", everything, broadcast(model_weights(everything)))
    if method == "per_dim":
        g = mean_gram(data, sorted(everything), grams)
        W, info = fit_dimension_weights_on(data, sorted(everything), model_weights(everything), shrinkage,
                                           nonneg=nonneg_dim, grams=g)
        W = rescale_weights(W)
        fits.append({"method": "per_dim", "trained_on": sorted(everything), "shrinkage": shrinkage, "rows": data.n_rows,
                     "seconds": round(info.seconds, 3), "evaluations": info.evaluations, "iterations": info.iterations,
                     "train_cosine": info.mean_cosine, "final": True})
        return Fitted("per_dim", everything, W, shrinkage=shrinkage)
    if method == "lgbm":
        from ensemble.lgbm_stacker import fit_lgbm_stacker

        t0 = time.perf_counter()
        stacker = fit_lgbm_stacker(data, sorted(everything), seed=seed, progress=_dim_bar(progress, "lgbm refit"), **lgbm_opts)
        fits.append({"method": "lgbm", "trained_on": sorted(everything), "rows": data.n_rows,
                     "seconds": round(time.perf_counter() - t0, 3), "final": True})
        return Fitted("lgbm", everything, stacker=stacker)
    raise ValueError(f"unknown method {method!r}")


def rescale_weights(W):
    """The same blend with readable numbers: a global scale leaves the normalised blend unchanged,
    so scale W to a mean per-dimension weight sum of 1."""
    total = float(np.mean(np.sum(W, axis=0)))
    return (W / total).astype(np.float32) if total > 1e-12 else W


def _argmax(scores, grid):
    """The grid value with the best score; ties go to the stronger shrinkage (earlier in the grid)."""
    best = max(scores[lam] for lam in grid)
    return next(lam for lam in grid if scores[lam] == best)


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
