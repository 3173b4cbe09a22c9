"""ensemble/: blend weights, the per-dimension stacker, nested CV (in memory, no files)."""
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ensemble.nested_cv as ncv
from ensemble import synthetic as S
from ensemble.blend import blend, load_weights, save_weights, weights_table
from ensemble.data import StackData, fold_order
from ensemble.nested_cv import Fitted, Ledger, LeakError, nested_cv
from ensemble.objective import cosine_and_gradient, cosine_sum, model_stats
from ensemble.stackers import fit_dimension_weights, fit_model_weights

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

    Check by construction: a score of weights that no fit returned, or of a fold the fit saw, fails at once.
    """
    trained, scored = {}, []
    real_fit, real_score = ncv.fit_dimension_weights_on, ncv.cosine_sum

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

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ncv, "fit_dimension_weights_on", spy_fit)
        mp.setattr(ncv, "cosine_sum", spy_score)
        result = nested_cv(split_data, shrinkage_grid=FAST_GRID)
    return result, scored


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
    assert len(scored) == (K * (K - 1) // 2) * G * 2 + K * G  # inner (both sides) + k-fold scores
    for seen, (fold,) in scored:
        assert fold not in seen and seen | {fold} <= folds
    # the ledger says the same for every method, and tuning never used the outer fold
    for rec in result.ledger:
        if rec["kind"] == "score":
            assert rec["scored_fold"] not in rec["trained_on"]
        else:
            assert rec["outer_fold"] not in rec["used_folds"]
    outer = [r for r in result.ledger if r["kind"] == "score" and r["purpose"] == "outer"]
    assert {(r["method"], r["scored_fold"]) for r in outer} == {(m, f) for m in ("equal", "per_model") for f in folds}
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
    stats = model_stats(split_data)
    w = fit_model_weights(stats, None)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()

    def score(v):
        return cosine_sum(split_data, np.repeat(np.asarray(v, np.float32)[:, None], D, 1), split_data.fold_values)[0]

    best = score(w)
    rng = np.random.default_rng(1)
    for _ in range(20):
        v = np.clip(w + 0.05 * rng.standard_normal(3), 0, None)
        assert score(v) <= best + 1e-6


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
    np.testing.assert_allclose(blend(preds, [0.2, 0.3, 0.5]), blend(preds, np.repeat([[0.2], [0.3], [0.5]], D, 1)), atol=1e-6)


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
    result = nested_cv(data, shrinkage_grid=FAST_GRID)
    assert set(result.methods) == {"equal", "per_model", "per_dim"}
    assert any("no inner CV" in note for note in result.notes)


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
                assert root not in {"torch", "torchvision", "timm", "open_clip", "models"}, f"{path.name} imports {name}"
