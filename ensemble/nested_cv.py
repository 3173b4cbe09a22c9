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
"""
import time
from dataclasses import dataclass, field

import numpy as np

from ensemble.grid_cv import grid_cv
from ensemble.ledger import Fitted, Ledger, LeakError, fold_rows  # noqa: F401 (LeakError: re-exported)
from ensemble.objective import dimension_grams, mean_gram, model_stats
from ensemble.ridge_stacker import fit_ridge, fold_sums
from ensemble.stackers import fit_dimension_weights_on, fit_equal_weights, fit_model_weights

DEFAULT_SHRINKAGE_GRID = (10.0, 1.0, 0.1, 0.01, 0.0)
FALLBACK_SHRINKAGE = 0.1  # used for the outer scores when there are too few folds for an inner CV
# ridge alpha is scikit-learn's (on sums over rows, not means): 0.3-3 won on synthetic sets of 3,000-20,000 rows
DEFAULT_RIDGE_ALPHAS = (100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1)
FALLBACK_RIDGE_ALPHA = 3.0
LINEAR_METHODS = ("equal", "per_model", "per_dim")  # blends stored as an (M, D) weight matrix (weights.npz)
AUTO_METHODS = LINEAR_METHODS + ("ridge",)  # `auto` without LightGBM
METHODS = AUTO_METHODS + ("lgbm",)


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
    shrinkage_per_fold: dict = field(default_factory=dict)  # outer fold -> shrinkage picked by the inner CV
    inner_scores: dict = field(default_factory=dict)  # outer fold -> {shrinkage: inner CV score}
    cv_by_shrinkage: dict = field(default_factory=dict)  # shrinkage -> K-fold score (picks the final one)
    chosen_shrinkage: float = None
    ridge: object = None  # GridCV of the ridge alpha when ridge was evaluated
    model_weights: dict = field(default_factory=dict)  # per-model weights on all rows
    drop_one: dict = field(default_factory=dict)  # run name -> nested score of the per-model blend without it
    oof_blend: np.ndarray = None  # (N, D) the chosen method's nested OOF predictions, rows as in the data
    notes: list = field(default_factory=list)
    fits: list = field(default_factory=list)  # one entry per per-dim / ridge / lgbm fit: folds, parameter, seconds...
    ledger: list = field(default_factory=list)
    seconds: float = 0.0

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


def _summary(sums):
    """{fold: (sum, n)} -> {"per_fold": [...], "overall": x} in fold order."""
    folds = sorted(sums)
    total = sum(sums[f][0] for f in folds)
    count = sum(sums[f][1] for f in folds)
    return {"per_fold": [sums[f][0] / sums[f][1] for f in folds], "overall": total / count}


def _grid(values, what):
    grid = sorted({float(x) for x in values}, reverse=True)  # strongest regularisation first
    if not grid:
        raise ValueError(f"empty {what} grid")
    return grid


def nested_cv(data, methods=LINEAR_METHODS, shrinkage_grid=DEFAULT_SHRINKAGE_GRID, choose=None,
              nonneg_model=True, nonneg_dim=False, seed=0, lgbm_options=None, progress=False, refit=True,
              ridge_alphas=DEFAULT_RIDGE_ALPHAS, drop_one=False, predict_oof=False):
    """Nested CV of `methods` on a StackData; returns a NestedResult with the chosen method refitted.

    `choose`: force the chosen method (it must be in `methods`); default: the best nested score
    (ties go to the simpler method, in the order of METHODS). `drop_one`: also score the per-model
    blend without each model. `predict_oof`: also the chosen method's nested OOF predictions.
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
    grid = _grid(shrinkage_grid, "shrinkage")
    alphas = _grid(ridge_alphas, "ridge alpha")
    if "ridge" in methods and min(alphas) <= 0:
        raise ValueError(f"ridge alphas must be > 0, got {alphas}")
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
    outer = {}  # method -> {outer fold: the Fitted scored there}
    fits = []

    def broadcast(w):
        return np.repeat(np.asarray(w, dtype=np.float32)[:, None], D, axis=1)

    if "equal" in methods:
        eq = Fitted("equal", frozenset(), broadcast(fit_equal_weights(M)))
        outer["equal"] = {k: eq for k in folds}
        results["equal"] = _summary({k: ledger.score(eq, k, "outer") for k in folds})

    if "per_model" in methods:
        outer["per_model"] = {k: Fitted("per_model", everything - {k}, broadcast(model_weights(everything - {k})))
                              for k in folds}
        results["per_model"] = _summary({k: ledger.score(f, k, "outer") for k, f in outer["per_model"].items()})

    tuned = {}
    grams = dimension_grams(data) if "per_dim" in methods else None
    if "per_dim" in methods:
        bar = _progress(progress, (K * (K - 1) // 2 if K >= 3 else 0) * len(grid) + K * len(grid), "per-dim fits")

        def dim_path(train):
            """Fits on `train` along the shrinkage grid, strongest first, each warm-started from the last."""
            prior = model_weights(train)
            n = data.count(train)
            g = mean_gram(data, sorted(train), grams)
            W, path = None, []
            for lam in grid:
                W, info = fit_dimension_weights_on(data, sorted(train), prior, lam, nonneg=nonneg_dim, init=W, grams=g)
                fits.append({"method": "per_dim", "trained_on": sorted(train), "shrinkage": lam, "rows": n,
                             "seconds": round(info.seconds, 3), "evaluations": info.evaluations,
                             "iterations": info.iterations, "train_cosine": info.mean_cosine})
                bar.update(1)
                path.append((lam, Fitted("per_dim", frozenset(train), W, shrinkage=lam)))
            return path

        tuned["per_dim"] = grid_cv(ledger, folds, grid, dim_path, "per_dim", "shrinkage", FALLBACK_SHRINKAGE)
        bar.close()

    sums = fold_sums(data) if "ridge" in methods else None
    if "ridge" in methods:
        bar = _progress(progress, (K * (K - 1) // 2 if K >= 3 else 0) + K, "ridge fits")

        def ridge_path(train):
            t0 = time.perf_counter()
            stackers = fit_ridge(sums, train, alphas, data.names)
            fits.append({"method": "ridge", "trained_on": sorted(train), "alphas": alphas, "rows": data.count(train),
                         "seconds": round(time.perf_counter() - t0, 3)})
            bar.update(1)
            return [(st.alpha, Fitted("ridge", frozenset(train), stacker=st)) for st in stackers]

        tuned["ridge"] = grid_cv(ledger, folds, alphas, ridge_path, "ridge", "alpha", FALLBACK_RIDGE_ALPHA)
        bar.close()
    for m, g in tuned.items():
        results[m] = _summary(g.sums)
        outer[m] = g.outer
        notes += g.notes

    lgbm_opts = dict(lgbm_options or {})
    if "lgbm" in methods:
        from ensemble.lgbm_stacker import fit_lgbm_stacker

        if K < 3:
            notes.append(f"lgbm skipped: it needs >= 3 folds (an early-stopping fold inside each training set), got {K}")
            methods.remove("lgbm")
        else:
            lgbm_sums, outer["lgbm"] = {}, {}
            for k in folds:
                train = everything - {k}
                t0 = time.perf_counter()
                stacker = fit_lgbm_stacker(data, sorted(train), seed=seed, progress=_dim_bar(progress, f"lgbm fold {k}"),
                                           **lgbm_opts)
                fits.append({"method": "lgbm", "trained_on": sorted(train), "rows": data.count(train),
                             "seconds": round(time.perf_counter() - t0, 3),
                             "mean_rounds": float(np.mean(stacker.best_rounds))})
                fitted = Fitted("lgbm", train, stacker=stacker)
                lgbm_sums[k] = ledger.score(fitted, k, "outer")
                if predict_oof:  # boosters are large: kept only when the OOF blend may need them
                    outer["lgbm"][k] = fitted
            results["lgbm"] = _summary(lgbm_sums)
        if choose == "lgbm" and "lgbm" not in results:
            raise ValueError(f"lgbm was requested but could not be evaluated with {K} folds")

    if choose is None:
        best = max(results[m]["overall"] for m in methods)
        choose = next(m for m in methods if results[m]["overall"] == best)

    oof_blend = None
    if predict_oof:
        oof_blend = np.empty((data.n_rows, D), dtype=np.float32)
        for k, fitted in outer[choose].items():
            a_k, b_k = data.bounds[k]
            oof_blend[a_k:b_k] = ledger.predict(fitted, k, "oof_blend")
    drop = _drop_one(ledger, data, stats, folds, nonneg_model, broadcast) if drop_one else {}

    final = final_linear = None
    if refit:
        per_dim, ridge = tuned.get("per_dim"), tuned.get("ridge")
        params = {"shrinkage": per_dim.chosen if per_dim else None, "alpha": ridge.chosen if ridge else None}
        refit_one = lambda m: _refit(data, m, everything, model_weights, broadcast, params, nonneg_dim,  # noqa: E731
                                     grams, sums, seed, lgbm_opts, progress, fits)
        final = final_linear = refit_one(choose)
        if choose not in LINEAR_METHODS:
            # a numpy-only weight-matrix fallback beside the chosen stacker: the best weight method
            linear = [m for m in methods if m in LINEAR_METHODS]
            if linear:
                final_linear = refit_one(max(linear, key=lambda m: (results[m]["overall"], -linear.index(m))))

    per_dim = tuned.get("per_dim")
    return NestedResult(
        folds=folds,
        fold_sizes=[data.bounds[f][1] - data.bounds[f][0] for f in folds],
        methods={m: results[m] for m in methods if m in results},
        single_models=single,
        chosen_method=choose,
        final=final,
        final_linear=final_linear,
        shrinkage_grid=grid,
        shrinkage_per_fold=per_dim.per_fold if per_dim else {},
        inner_scores=per_dim.inner_scores if per_dim else {},
        cv_by_shrinkage=per_dim.cv_by_value if per_dim else {},
        chosen_shrinkage=per_dim.chosen if per_dim else None,
        ridge=tuned.get("ridge"),
        model_weights={"all": model_weights(everything).tolist()},
        drop_one=drop,
        oof_blend=oof_blend,
        notes=notes,
        fits=fits,
        ledger=ledger.records,
        seconds=time.perf_counter() - t_start,
    )


def _drop_one(ledger, data, stats, folds, nonneg, broadcast):
    """{run name: nested score of the per-model blend fitted without it} (its weight held at 0)."""
    everything, M, out = frozenset(folds), data.n_models, {}
    if M < 2:
        return out
    for mi, name in enumerate(data.names):
        keep = [j for j in range(M) if j != mi]
        sub = (stats[0][:, keep], stats[1][:, keep][:, :, keep])
        sums = {}
        for k in folds:
            train = everything - {k}
            w = np.zeros(M, dtype=np.float32)
            w[keep] = fit_model_weights(sub, fold_rows(data, train), nonneg=nonneg)
            sums[k] = ledger.score(Fitted(f"per_model without {name}", train, broadcast(w)), k, "drop_one")
        out[name] = _summary(sums)
    return out


def _refit(data, method, everything, model_weights, broadcast, params, nonneg_dim, grams, sums, seed, lgbm_opts,
           progress, fits):
    M = data.n_models
    if method == "equal":
        return Fitted("equal", frozenset(), broadcast(fit_equal_weights(M)))
    if method == "per_model":
        return Fitted("per_model", everything, broadcast(model_weights(everything)))
    if method == "per_dim":
        shrinkage = params["shrinkage"]
        g = mean_gram(data, sorted(everything), grams)
        W, info = fit_dimension_weights_on(data, sorted(everything), model_weights(everything), shrinkage,
                                           nonneg=nonneg_dim, grams=g)
        W = rescale_weights(W)
        fits.append({"method": "per_dim", "trained_on": sorted(everything), "shrinkage": shrinkage, "rows": data.n_rows,
                     "seconds": round(info.seconds, 3), "evaluations": info.evaluations, "iterations": info.iterations,
                     "train_cosine": info.mean_cosine, "final": True})
        return Fitted("per_dim", everything, W, shrinkage=shrinkage)
    if method == "ridge":
        t0 = time.perf_counter()
        (stacker,) = fit_ridge(sums, everything, [params["alpha"]], data.names)
        fits.append({"method": "ridge", "trained_on": sorted(everything), "alphas": [params["alpha"]],
                     "rows": data.n_rows, "seconds": round(time.perf_counter() - t0, 3), "final": True})
        return Fitted("ridge", everything, stacker=stacker)
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
