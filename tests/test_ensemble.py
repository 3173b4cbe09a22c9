"""ensemble/: blend weights, the per-dimension stacker, nested CV (in memory, no files)."""
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ensemble.ledger as ledger_mod
import ensemble.nested_cv as ncv
from ensemble.blend import blend, load_weights, save_weights, weights_table
from ensemble.data import StackData, fold_order
from ensemble.nested_cv import Fitted, LeakError, Ledger, nested_cv
from ensemble.objective import cosine_and_gradient, cosine_sum, model_stats
from ensemble.weight_fits import fit_dimension_weights, fit_model_weights
from tests import synthetic as S

REPO = Path(__file__).resolve().parents[1]
D = 384
FAST_GRID = (1.0, 0.0)


def stack_data(T, X_raw, folds, names=None):
    """StackData from raw (M, N, D) predictions: rows sorted by fold, every row L2-normalised."""
    order = fold_order(folds)
    X = X_raw[:, order].astype(np.float32)
    X /= np.maximum(np.linalg.norm(X, axis=2, keepdims=True), 1e-12)
    T = T[order] / np.linalg.norm(T[order], axis=1, keepdims=True)
    names = names or [f"m{i}" for i in range(X.shape[0])]
    return StackData(X, T.astype(np.float32), np.asarray(folds)[order], names)


@pytest.fixture(scope="module")
def split_data():
    """Model 0 is good on dims 0-191 and bad on 192-383, model 1 the reverse, model 2 mediocre."""
    n = 3000
    sigma = np.empty((3, D), dtype=np.float32)
    sigma[0, :192], sigma[0, 192:] = 0.6, 3.0
    sigma[1, :192], sigma[1, 192:] = 3.0, 0.6
    sigma[2] = 1.5
    T = S.make_targets(n, seed=1)
    X = S.make_predictions(T, sigma, seed=1, shared=0.0)
    return stack_data(T, X, S.make_folds(n, k=5, seed=1))


@pytest.fixture(scope="module")
def noise_data():
    """Model 0 predicts the target plus noise; models 1 and 2 are pure noise."""
    n = 3000
    rng = np.random.default_rng(7)
    T = S.make_targets(n, seed=2)
    X = np.empty((3, n, D), dtype=np.float32)
    X[0] = S.make_predictions(T, np.full((1, D), 1.2, np.float32), seed=2)[0]
    X[1:] = rng.standard_normal((2, n, D), dtype=np.float32)
    return stack_data(T, X, S.make_folds(n, k=5, seed=2))


@pytest.fixture(scope="module")
def spied_split_run(split_data):
    """Nested CV on split_data with every per-dim fit tagged by its training folds and every score checked.

    Check by construction: a score of weights that no fit returned, or of a fold the fit saw, fails at once:
    the selection scores (cosine_sum: inner CV, K-fold) and the outer pass's (block_cosines: the nested scores).
    """
    trained, scored = {}, []
    real_fit, real_score, real_block = ncv.fit_dimension_weights_on, ledger_mod.cosine_sum, ledger_mod.block_cosines

    def spy_fit(data, folds, *a, **kw):
        W, info = real_fit(data, folds, *a, **kw)
        trained[id(W)] = (W, frozenset(folds))
        return W, info

    def spy_score(data, W, folds):
        assert id(W) in trained, "scored weights that no fit returned"
        seen = trained[id(W)][1]
        assert not (set(folds) & seen), f"scored folds {folds} with weights trained on {sorted(seen)}"
        scored.append((seen, tuple(folds)))
        return real_score(data, W, folds)

    def spy_block(fitted, X, T):
        if fitted.method == "per_dim":
            assert id(fitted.weights) in trained, "scored weights that no fit returned"
            seen = trained[id(fitted.weights)][1]
            folds = {int(split_data.folds[_row_of(split_data, x)]) for x in X[0]}
            assert not (folds & seen), f"outer pass scored folds {folds} with weights trained on {sorted(seen)}"
            scored.append((seen, tuple(folds), "outer"))
        return real_block(fitted, X, T)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ncv, "fit_dimension_weights_on", spy_fit)
        mp.setattr(ledger_mod, "cosine_sum", spy_score)
        mp.setattr(ledger_mod, "block_cosines", spy_block)
        result = nested_cv(split_data, shrinkage_grid=FAST_GRID)
    return result, scored


def _row_of(data, x):
    """The row of data.X[0] equal to the (D,) vector x."""
    return int(np.flatnonzero((data.X[0] == x).all(axis=1))[0])


def test_per_dim_beats_per_model_and_finds_the_split(spied_split_run):
    result, _ = spied_split_run
    per_model = result.methods["per_model"]["overall"]
    per_dim = result.methods["per_dim"]["overall"]
    assert per_dim > per_model + 0.01, result.table()
    assert all(d > m for d, m in zip(result.methods["per_dim"]["per_fold"], result.methods["per_model"]["per_fold"]))
    assert result.chosen_method == "per_dim"
    W = result.final.weights
    assert W.shape == (3, D)
    assert np.mean(W[0, :192] > W[1, :192]) > 0.95
    assert np.mean(W[1, 192:] > W[0, 192:]) > 0.95
    # per-model weights cannot tell the halves apart: models 0 and 1 weigh about the same
    w = np.asarray(result.model_weights["all"])
    assert abs(w[0] - w[1]) < 0.1


def test_nested_cv_never_scores_a_fold_its_stacker_saw(spied_split_run, split_data):
    result, scored = spied_split_run
    folds = set(split_data.fold_values)
    K, G = len(folds), len(FAST_GRID)
    selection = [s for s in scored if len(s) == 2]
    assert len(selection) == (K * (K - 1) // 2) * G * 2 + K * G  # inner (both sides) + k-fold scores
    outer_pass = [s for s in scored if len(s) == 3]
    assert sorted(fold for _, (fold,), _ in outer_pass) == sorted(folds)  # one outer fit per fold, all its rows
    for seen, (fold,), *_ in scored:
        assert fold not in seen and seen | {fold} <= folds
    # the ledger says the same for every method, and tuning never used the outer fold
    for rec in result.ledger:
        if rec["kind"] == "score":
            assert rec["scored_fold"] not in rec["trained_on"]
        else:
            assert rec["outer_fold"] not in rec["used_folds"]
    outer = [r for r in result.ledger if r["kind"] == "score" and r["purpose"] == "outer"]
    assert sorted((r["method"], r["scored_fold"]) for r in outer) == sorted(
        (m, f) for m in ("equal", "per_model", "per_dim") for f in folds)
    assert result.final.trained_on == frozenset(folds)


def test_stacker_puts_the_weight_on_the_only_informative_model(noise_data):
    result = nested_cv(noise_data, shrinkage_grid=FAST_GRID, choose="per_dim")
    w = np.asarray(result.model_weights["all"])
    assert w[0] > 0.95, w
    W = result.final.weights
    share = np.abs(W[0]).sum() / np.abs(W).sum()
    assert share > 0.9, share
    assert np.mean(W[0] > np.abs(W[1:]).max(axis=0)) > 0.95
    best_single = max(s["overall"] for s in result.single_models.values())
    assert result.single_models["m0"]["overall"] == best_single
    # blending in noise must not beat the informative model by much, nor lose to it much
    assert abs(result.methods["per_dim"]["overall"] - best_single) < 0.02


def test_ledger_refuses_to_score_a_seen_fold(split_data):
    ledger = Ledger(split_data, None)
    W = np.full((3, D), 1 / 3, np.float32)
    with pytest.raises(LeakError):
        ledger.score(Fitted("per_dim", frozenset({0, 1}), W), 1, "outer")
    with pytest.raises(LeakError):
        ledger.select(2, {1, 2, 3}, "shrinkage")
    s, n = ledger.score(Fitted("per_dim", frozenset({0, 1}), W), 2, "outer")
    assert n == split_data.count([2])


def test_nested_cv_is_deterministic():
    n = 800
    T = S.make_targets(n, seed=5)
    data = stack_data(T, S.make_predictions(T, S.noise_levels(2, seed=5), seed=5), S.make_folds(n, k=4, seed=5))
    a = nested_cv(data, shrinkage_grid=(1.0,), methods=("per_model", "per_dim"))
    b = nested_cv(data, shrinkage_grid=(1.0,), methods=("per_model", "per_dim"))
    assert a.methods == b.methods
    assert np.array_equal(a.final.weights, b.final.weights)


def test_gradient_matches_finite_differences(split_data):
    rng = np.random.default_rng(0)
    W = (0.3 + 0.1 * rng.standard_normal((3, D))).astype(np.float32)
    folds = [0, 1]
    _, grad = cosine_and_gradient(split_data, W, folds)
    n = split_data.count(folds)
    for m, d in [(0, 0), (1, 200), (2, 383)]:
        h = 1e-2
        Wp, Wm = W.copy(), W.copy()
        Wp[m, d] += h
        Wm[m, d] -= h
        num = (cosine_sum(split_data, Wp, folds)[0] - cosine_sum(split_data, Wm, folds)[0]) / (2 * h * n)
        assert num == pytest.approx(grad[m, d], rel=2e-2, abs=1e-6)


def test_per_model_weights_match_brute_force(split_data):
    """The fitted per-model weights against every point of a 0.05 grid over the simplex, each scored by its blend's
    mean cosine computed here from the raw rows: at least the grid's best, and next to the best grid point."""
    w = fit_model_weights(model_stats(split_data), None)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
    X, T = split_data.X.astype(np.float64), split_data.T.astype(np.float64)  # unit rows
    dots = np.einsum("mid,id->im", X, T)  # row i: model m's cosine to the target
    grams = np.einsum("mid,nid->imn", X, X)

    def mean_cosine_of_blends(V):  # V (k, M): the mean over rows of cos(sum_m V[j, m] X[m, i], T[i]), per j
        return (dots @ V.T / np.sqrt(np.einsum("imn,km,kn->ik", grams, V, V))).mean(axis=0)

    steps = 20
    grid = np.array([(i, j, steps - i - j) for i in range(steps + 1) for j in range(steps + 1 - i)]) / steps
    scores = mean_cosine_of_blends(grid)
    best = grid[scores.argmax()]
    fitted = mean_cosine_of_blends(np.asarray(w, np.float64)[None])[0]
    assert fitted >= scores.max() - 1e-6, (w, best)
    assert np.abs(w - best).max() <= 1 / steps, (w, best)
    assert fitted > mean_cosine_of_blends(np.full((1, 3), 1 / 3))[0] + 1e-3  # the grid is not flat here


def test_fit_dimension_weights_on_plain_arrays_and_shrinkage(split_data):
    preds = [split_data.X[m] for m in range(3)]
    prior = np.full(3, 1 / 3)
    W_free, info = fit_dimension_weights(preds, split_data.T, prior, shrinkage=0.0)
    W_tight, _ = fit_dimension_weights(preds, split_data.T, prior, shrinkage=1e4)
    assert info.mean_cosine > 0
    assert np.abs(W_tight - 1 / 3).max() < 0.02  # huge shrinkage keeps the prior
    assert np.abs(W_free - 1 / 3).max() > 0.1
    W_nn, _ = fit_dimension_weights(preds, split_data.T, prior, shrinkage=0.0, nonneg=True, max_iter=30)
    assert (W_nn >= 0).all()


def test_blend_normalises_and_matches_manual(split_data):
    rng = np.random.default_rng(3)
    preds = [rng.standard_normal((50, D)).astype(np.float32) * (m + 1) for m in range(3)]
    W = rng.uniform(0.1, 1.0, (3, D)).astype(np.float32)
    out = blend(preds, W)
    assert out.shape == (50, D) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    manual = sum(W[m] * p / np.linalg.norm(p, axis=1, keepdims=True) for m, p in enumerate(preds))
    manual /= np.linalg.norm(manual, axis=1, keepdims=True)
    np.testing.assert_allclose(out, manual, atol=1e-5)
    # per-model weights broadcast to the same thing
    np.testing.assert_allclose(blend(preds, [0.2, 0.3, 0.5]), blend(preds, np.repeat([[0.2], [0.3], [0.5]], D, 1)),
                               atol=1e-6)


def test_blend_rejects_nan_and_shape_mismatch():
    a = np.ones((4, D), np.float32)
    b = a.copy()
    b[2, 5] = np.nan
    with pytest.raises(ValueError, match="modelB predictions: NaN or inf in row 2"):
        blend([a, b], [0.5, 0.5], names=["modelA", "modelB"])
    with pytest.raises(ValueError, match="shape"):
        blend([a, a[:3]], [0.5, 0.5])
    with pytest.raises(ValueError, match="weights shape"):
        blend([a, a], np.ones((3, D)))


def test_weights_round_trip(tmp_path):
    W = np.random.default_rng(0).uniform(size=(2, D)).astype(np.float32)
    save_weights(tmp_path / "w.npz", W, ["a", "b"], "per_dim", 0.1)
    back = load_weights(tmp_path / "w.npz")
    assert np.array_equal(back["weights"], W) and back["models"] == ["a", "b"]
    assert back["method"] == "per_dim" and back["shrinkage"] == pytest.approx(0.1)
    save_weights(tmp_path / "m.npz", [0.25, 0.75], ["a", "b"], "per_model")
    back = load_weights(tmp_path / "m.npz")
    assert back["weights"].shape == (2, D) and back["shrinkage"] is None
    table = weights_table(W, ["a", "b"])
    assert list(table.columns) == ["dim", "a", "b"] and len(table) == D


def test_two_folds_fall_back_without_inner_cv():
    n = 600
    T = S.make_targets(n, seed=4)
    X = S.make_predictions(T, S.noise_levels(2, seed=4), seed=4)
    data = stack_data(T, X, S.make_folds(n, k=2, seed=4))
    result = nested_cv(data, methods=ncv.AUTO_METHODS, shrinkage_grid=FAST_GRID, ridge_alphas=(30.0, 3.0))
    assert set(result.methods) == {"equal", "per_model", "per_dim", "ridge"}
    assert any("no inner CV" in note and "per_dim" in note for note in result.notes)
    assert any("no inner CV" in note and "ridge" in note and "alpha 3" in note for note in result.notes)
    assert result.ridge.per_fold == {0: 3.0, 1: 3.0}  # FALLBACK_RIDGE_ALPHA


def test_blend_module_is_numpy_only():
    code = ("import sys, ensemble.blend; bad = [m for m in ('torch', 'lightgbm', 'scipy', 'sklearn', 'models') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ensemble_never_imports_torch_or_models():
    for path in (REPO / "ensemble").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                root = name.split(".")[0]
                assert root not in {"torch", "torchvision", "timm", "open_clip", "models"}, \
                    f"{path.name} imports {name}"


# ----------------------------------------------------------------------------- ridge, OOF blend, drop-one

SMALL_D = 16  # the ridge algebra does not depend on D = 384; small dims keep these tests fast


def small_data(n=1500, seed=11, permuted=False):
    """3 models on 16 dims. With `permuted`, model 0 predicts the target with its dims shuffled: only a
    stacker that mixes dimensions can use it."""
    T = S.make_targets(n, dim=SMALL_D, seed=seed)
    sigma = np.array([[0.4] * SMALL_D, [1.5] * SMALL_D, [2.0] * SMALL_D], dtype=np.float32)
    X = S.make_predictions(T, sigma, seed=seed)
    if permuted:
        X[0] = X[0][:, np.random.default_rng(seed).permutation(SMALL_D)]
    return stack_data(T, X, S.make_folds(n, k=5, seed=seed))


@pytest.mark.parametrize("n", [1500, 40])  # more rows than the 48 features (Gram sums), and fewer (dual system)
def test_ridge_fit_equals_scikit_learn(n):
    from sklearn.linear_model import Ridge

    from ensemble.ridge_stacker import features, fit_ridge, fold_sums, predict_ridge

    data = small_data(n=n)
    train = [0, 2, 3]
    rows = ncv.fold_rows(data, train)
    sums = fold_sums(data, chunk=100 if n > 100 else 3)  # several chunks per fold
    assert (sums.rows is None) == (n > 48)
    for alpha, stacker in zip((10.0, 0.1), fit_ridge(sums, train, (10.0, 0.1), data.names)):
        ref = Ridge(alpha=alpha).fit(features(data.X[:, rows]), data.T[rows])
        np.testing.assert_allclose(stacker.coef, ref.coef_, atol=1e-5)
        np.testing.assert_allclose(stacker.intercept, ref.intercept_, atol=1e-5)
        held = ncv.fold_rows(data, [1])
        expected = ref.predict(features(data.X[:, held]))
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        np.testing.assert_allclose(predict_ridge(stacker, data.X[:, held]), expected, atol=1e-5)


@pytest.fixture(scope="module")
def spied_ridge_run():
    """Nested CV with ridge on permuted data; every ridge score / prediction checked against the fits' folds."""
    import ensemble.ledger as L

    data = small_data(permuted=True)
    trained, scored = {}, []
    real_fit, real_sums, real_predict = ncv.fit_ridge, L.ridge_cosine_sums, L.predict_ridge

    def spy_fit(sums, folds, alphas, models):
        out = real_fit(sums, folds, alphas, models)
        for st in out:
            trained[id(st)] = (st, frozenset(folds))
        return out

    def check(stacker, folds):
        assert id(stacker) in trained, "scored a ridge stacker that no fit returned"
        seen = trained[id(stacker)][1]
        assert not (set(folds) & seen), f"ridge fitted on {sorted(seen)} used on folds {folds}"
        scored.append((seen, tuple(folds)))

    def spy_sums(stackers, d, folds):
        for st in stackers:
            check(st, folds)
        return real_sums(stackers, d, folds)

    def spy_predict(stacker, X_rows):
        fold = int(data.folds[np.flatnonzero((data.X[0] == X_rows[0][0]).all(axis=1))[0]])
        check(stacker, [fold])
        return real_predict(stacker, X_rows)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ncv, "fit_ridge", spy_fit)
        mp.setattr(L, "ridge_cosine_sums", spy_sums)
        mp.setattr(L, "predict_ridge", spy_predict)
        result = nested_cv(data, methods=("equal", "per_model", "per_dim", "ridge"), shrinkage_grid=FAST_GRID,
                           ridge_alphas=(10.0, 1.0, 0.1), predict_oof=True, drop_one=True)
    return data, result, scored


def test_ridge_mixes_dimensions_and_never_sees_its_fold(spied_ridge_run):
    data, result, scored = spied_ridge_run
    K, G = len(data.fold_values), 3
    # inner (both sides) + k-fold (selection rows) + the outer pass's nested scores + OOF predictions (all rows)
    assert len(scored) == (K * (K - 1) // 2) * G * 2 + K * G + K + K
    # model 0 is the best model once its dimensions are put back: only ridge can
    assert result.chosen_method == "ridge", result.table()
    assert result.methods["ridge"]["overall"] > result.methods["per_dim"]["overall"] + 0.05, result.table()
    for rec in result.ledger:
        if rec["kind"] in ("score", "predict"):
            assert rec["scored_fold"] not in rec["trained_on"]
        else:
            assert rec["outer_fold"] not in rec["used_folds"]
    ridge_selects = [r for r in result.ledger if r["kind"] == "select" and r["purpose"].startswith("alpha")]
    assert sorted(r["outer_fold"] for r in ridge_selects) == data.fold_values
    assert set(result.ridge.per_fold) == set(data.fold_values) and result.ridge.chosen in (10.0, 1.0, 0.1)
    assert result.final.method == "ridge" and result.final.trained_on == frozenset(data.fold_values)
    assert result.final_linear.method in ncv.LINEAR_METHODS  # the weights.npz fallback


def test_oof_blend_is_the_nested_prediction_of_the_chosen_method(spied_ridge_run):
    data, result, _ = spied_ridge_run
    oof = result.oof_blend
    assert oof.shape == (data.n_rows, SMALL_D) and oof.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(oof, axis=1), 1.0, atol=1e-5)
    cos = np.einsum("nd,nd->n", oof, data.T)
    per_fold = [float(cos[data.folds == k].mean()) for k in data.fold_values]
    np.testing.assert_allclose(per_fold, result.methods["ridge"]["per_fold"], atol=1e-5)
    predicts = [r for r in result.ledger if r["kind"] == "predict"]
    assert sorted(r["scored_fold"] for r in predicts) == data.fold_values
    assert all(r["method"] == "ridge" and r["purpose"] == "oof_blend" for r in predicts)


@pytest.mark.parametrize("method", ["equal", "per_model", "per_dim"])
def test_oof_blend_of_weight_methods_matches_their_nested_scores(method):
    data = small_data(n=600, seed=12)
    result = nested_cv(data, methods=("equal", "per_model", method), shrinkage_grid=(1.0,), choose=method,
                       predict_oof=True, refit=False)
    cos = np.einsum("nd,nd->n", result.oof_blend, data.T)
    per_fold = [float(cos[data.folds == k].mean()) for k in data.fold_values]
    np.testing.assert_allclose(per_fold, result.methods[method]["per_fold"], atol=1e-5)


def test_drop_one_scores_each_models_marginal_value(spied_ridge_run):
    data, result, _ = spied_ridge_run
    drop = result.drop_one
    assert list(drop) == data.names
    # each score is the nested per-model score of the stack without that model, computed here from scratch
    for m, name in enumerate(data.names):
        keep = [j for j in range(data.n_models) if j != m]
        without = StackData(data.X[keep].copy(), data.T, data.folds, [data.names[j] for j in keep])
        alone = nested_cv(without, methods=("per_model",), refit=False).methods["per_model"]
        np.testing.assert_allclose(drop[name]["per_fold"], alone["per_fold"], atol=1e-6)
        assert drop[name]["overall"] == pytest.approx(alone["overall"], abs=1e-6)
    # model 0's dims are shuffled: a per-model blend can hardly use it; model 1 (sigma 1.5) is the best usable
    # one, model 2 (sigma 2) the next: the costs of dropping them follow that order
    full = result.methods["per_model"]["overall"]
    assert drop["m1"]["overall"] + 0.05 < drop["m2"]["overall"] < drop["m0"]["overall"] - 0.01 < full
    # dropping a model leaves a per-model blend of the others: never better than choosing among all
    # (up to the fits' noise)
    assert all(s["overall"] <= full + 1e-3 for s in drop.values())
    recs = [r for r in result.ledger if r["purpose"] == "drop_one"]
    assert len(recs) == 3 * 5 and all(r["scored_fold"] not in r["trained_on"] for r in recs)


def test_drop_one_with_two_models_is_the_other_single_model():
    data = small_data(n=600, seed=13)
    two = StackData(data.X[:2].copy(), data.T, data.folds, data.names[:2])
    result = nested_cv(two, methods=("per_model",), drop_one=True, refit=False)
    for dropped, kept in ((0, 1), (1, 0)):
        got = result.drop_one[two.names[dropped]]
        np.testing.assert_allclose(got["per_fold"], result.single_models[two.names[kept]]["per_fold"], atol=1e-6)


def test_ledger_refuses_to_predict_a_seen_fold(split_data):
    ledger = Ledger(split_data, None)
    W = np.full((3, D), 1 / 3, np.float32)
    with pytest.raises(LeakError):
        ledger.predict(Fitted("per_dim", frozenset({0, 1}), W), 0, "oof_blend")
    assert ledger.predict(Fitted("per_dim", frozenset({0, 1}), W), 2, "oof_blend").shape == (split_data.count([2]), D)


def test_ridge_module_applies_with_numpy_only(tmp_path):
    """ensemble.apply on a ridge ensemble imports neither scipy, scikit-learn, lightgbm nor torch."""
    from ensemble.ridge_stacker import RidgeStacker, save_ridge

    rng = np.random.default_rng(0)
    save_ridge(tmp_path / "ridge.npz", RidgeStacker(["a", "b"], rng.standard_normal((D, 2 * D)).astype(np.float32),
                                                    rng.standard_normal(D).astype(np.float32), 1.0))
    (tmp_path / "ensemble.json").write_text('{"method": "ridge", "models": ["a", "b"], "file": "ridge.npz"}')
    code = ("import sys, numpy as np; from ensemble.apply import apply_ensemble; "
            f"out = apply_ensemble({str(tmp_path)!r}, "
            "{'a': np.ones((3, 384)), 'b': np.arange(3 * 384.).reshape(3, 384)}); "
            "assert out.shape == (3, 384); "
            "bad = [m for m in ('torch', 'lightgbm', 'scipy', 'sklearn', 'models') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
