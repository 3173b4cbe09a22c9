"""The stacker from run files (chunked passes, the selection sample, float16 storage) against a plain in-memory
reference of the nested procedure."""
import json

import numpy as np
import pytest

from core.errors import DataError
from core.runs import PREDICTIONS_DTYPE, RUN_MANIFEST, load_run, write_run
from ensemble.fold_stats import SAMPLE_SEED
from ensemble.inputs import load_inputs
from ensemble.nested_cv import AUTO_METHODS, nested_cv
from ensemble.ridge_stacker import features
from ensemble.weight_fits import fit_dimension_weights, fit_model_weights
from tests import synthetic as S

N, M, K = 2400, 2, 3  # 2 x 384 = 768 ridge features < the 800-1,600 training rows: the Gram (primal) path
GRID, ALPHAS = (1.0, 0.0), (30.0, 0.3)


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def mean_cos(P, T):
    return float(np.sum(unit(P) * T, axis=1, dtype=np.float64).sum())


def reference_nested(X, T, folds, selection):
    """The nested procedure written plainly on in-memory arrays (rows in any order): per-model weights on all rows,
    per-dim fits on the `selection` rows (warm-started along the grid, strongest first), ridge solved in float64 on all
    rows (scikit-learn's solution: tests/test_ensemble.py checks it); each hyper-parameter picked for outer fold k
    by the inner CV on the selection rows of the other folds; every outer fit scored on all rows of its fold.
    Returns {method: per-fold scores}, {method: per-fold picks}."""
    import functools

    fold_values = sorted(set(folds.tolist()))
    stats = (np.einsum("mid,id->im", X, T), np.einsum("mid,kid->imk", X, X))
    in_sel = np.zeros(len(folds), bool)
    in_sel[selection] = True

    def rows(fs, sel=False):
        return np.flatnonzero(np.isin(folds, list(fs)) & (in_sel if sel else True))

    def per_model(train):
        return fit_model_weights(stats, rows(train))

    @functools.lru_cache(maxsize=None)
    def per_dim_path(train):
        r, s = rows(train), rows(train, sel=True)
        gram = np.einsum("mid,kid->dmk", X[:, r], X[:, r], dtype=np.float64) / len(r)
        W, out = None, []
        for lam in GRID:
            W, _ = fit_dimension_weights(list(X[:, s]), T[s], per_model(train), lam, init=W, grams=gram)
            out.append(lambda r, W=W: np.einsum("mid,md->id", X[:, r], W))
        return out

    @functools.lru_cache(maxsize=None)
    def ridge_path(train):
        Z, Y = features(X[:, rows(train)]).astype(np.float64), T[rows(train)].astype(np.float64)
        mz, my = Z.mean(axis=0), Y.mean(axis=0)
        gram, cross = (Z - mz).T @ (Z - mz), (Z - mz).T @ (Y - my)
        Ws = [np.linalg.solve(gram + a * np.eye(len(mz)), cross) for a in ALPHAS]
        return [lambda r, W=W: (features(X[:, r]) - mz) @ W + my for W in Ws]

    scores, picks = {"equal": [], "per_model": []}, {}
    for k in fold_values:
        r = rows([k])
        others = [f for f in fold_values if f != k]
        scores["equal"].append(mean_cos(X[:, r].sum(axis=0), T[r]) / len(r))
        scores["per_model"].append(mean_cos(np.einsum("mid,m->id", X[:, r], per_model(others)), T[r]) / len(r))
    for name, path in (("per_dim", per_dim_path), ("ridge", ridge_path)):
        scores[name], picks[name] = [], []
        for k in fold_values:
            inner = np.zeros(2)
            count = 0
            for j in fold_values:
                if j != k:
                    s = rows([j], sel=True)
                    inner += [mean_cos(p(s), T[s]) for p in path(frozenset(fold_values) - {k, j})]
                    count += len(s)
            pick = int(np.argmax(inner / count))  # ties: the first, the stronger value
            r = rows([k])
            scores[name].append(mean_cos(path(frozenset(fold_values) - {k})[pick](r), T[r]) / len(r))
            picks[name].append((GRID if name == "per_dim" else ALPHAS)[pick])
    return scores, picks


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Runs on disk whose rows are in no fold order; run 1 lists them in another order than run 0."""
    root = tmp_path_factory.mktemp("stack")
    p = S.write_synthetic_project(root, n=N, n_test=20, n_models=M, k=K, seed=21,
                                  sigma=np.stack([S.noise_levels(1, seed=21)[0], S.noise_levels(1, seed=22)[0] * 1.3]))
    run = load_run(p["runs"][1])
    perm = np.random.default_rng(1).permutation(N)
    write_run(p["runs"][1], [run.oof_ids[i] for i in perm], run.oof[perm], run.test_ids, run.test,
              run.mean_embedding, run.metrics, [])
    return p


@pytest.mark.parametrize("sample_rows", [N, 1500])  # selection = every row; a sample of 1,500 rows
def test_nested_scores_from_files_equal_the_in_memory_reference(project, sample_rows):
    data = load_inputs(project["runs"]).data
    data.chunk_rows = 300  # many chunks, each holding rows of every fold
    result = nested_cv(data, methods=AUTO_METHODS, shrinkage_grid=GRID, ridge_alphas=ALPHAS, predict_oof=True,
                       sample_rows=sample_rows)
    selection = (np.arange(N) if sample_rows >= N
                 else np.sort(np.random.default_rng(SAMPLE_SEED).choice(N, sample_rows, replace=False)))
    X, T = unit(project["X"]), unit(project["T"])  # rows in the first run's order, as the stacker reads them
    ref, picks = reference_nested(X, T, project["folds_array"], selection)
    assert result.selection_rows == len(selection)
    for method, per_fold in ref.items():
        np.testing.assert_allclose(result.methods[method]["per_fold"], per_fold, atol=1e-4, err_msg=method)
    assert list(result.per_dim.per_fold.values()) == picks["per_dim"]
    assert list(result.ridge.per_fold.values()) == picks["ridge"]
    # the per-dim fits ran on the selection rows; the OOF blend, one row per image in the files' order, gives the
    # nested scores of the chosen method on all rows
    assert {f["rows"] for f in result.fits if f["method"] == "per_dim"} <= {
        int(np.isin(project["folds_array"][selection], list(f)).sum()) for f in _training_sets(K)}
    cos = np.sum(result.oof_blend * T, axis=1)
    np.testing.assert_allclose([cos[project["folds_array"] == k].mean() for k in range(K)],
                               result.methods[result.chosen_method]["per_fold"], atol=1e-5)


def test_ensemble_fit_picks_the_method_the_in_memory_reference_picks(project, tmp_path):
    """`python -m ensemble.fit` from the files: the nested scores and the chosen method of the in-memory reference
    (ties go to the simpler method, in AUTO_METHODS' order)."""
    from ensemble.apply import SCORES_FILE
    from ensemble.fit import main

    argv = ["--runs", *map(str, project["runs"]), "--out", str(tmp_path), "--no-lgbm", "--quiet",
            "--shrinkage-grid", ",".join(map(str, GRID)), "--ridge-alphas", ",".join(map(str, ALPHAS))]
    assert main(argv) == 0
    scores = json.loads((tmp_path / SCORES_FILE).read_text())
    ref, _ = reference_nested(unit(project["X"]), unit(project["T"]), project["folds_array"], np.arange(N))
    overall = {m: float(np.average(ref[m], weights=np.bincount(project["folds_array"]))) for m in AUTO_METHODS}
    for method in AUTO_METHODS:
        assert scores["methods"][method]["overall"] == pytest.approx(overall[method], abs=1e-4), method
    best = max(overall.values())
    assert scores["chosen_method"] == next(m for m in AUTO_METHODS if overall[m] >= best - 1e-6)


def _training_sets(k):
    folds = set(range(k))
    return [folds - {a, b} for a in folds for b in folds] + [folds]


def test_float16_runs_round_trip_and_stack_like_float32(project, tmp_path):
    run = load_run(project["runs"][0])
    half = tmp_path / "half"
    write_run(half, run.oof_ids, run.oof, run.test_ids, run.test, run.mean_embedding, run.metrics, [],
              storage="float16")
    assert json.loads((half / RUN_MANIFEST).read_text())[PREDICTIONS_DTYPE] == "float16"
    back = load_run(half)
    assert back.oof.dtype == np.float16 and back.storage == "float16" and run.storage == "float32"
    np.testing.assert_allclose(back.oof, run.oof, rtol=1e-3, atol=1e-4)
    # both runs of the project stored as float16: every nested score within 1e-4 of float32's
    halves = []
    for j, src in enumerate(project["runs"]):
        r = load_run(src)
        halves.append(tmp_path / f"h{j}")
        write_run(halves[-1], r.oof_ids, r.oof, r.test_ids, r.test, r.mean_embedding, r.metrics, [], storage="float16")
    kw = {"methods": ("equal", "per_model", "ridge"), "ridge_alphas": ALPHAS[:1], "refit": False}
    full = nested_cv(load_inputs(project["runs"]).data, **kw).methods
    small = nested_cv(load_inputs(halves).data, **kw).methods
    for method in full:
        assert small[method]["overall"] == pytest.approx(full[method]["overall"], abs=1e-4)


def test_float16_storage_refuses_what_it_cannot_hold(project, tmp_path):
    run = load_run(project["runs"][0])
    big = np.array(run.oof)
    big[7, 3] = 7e4
    with pytest.raises(DataError, match=r"oof\.npy: prediction for imgId .* \(row 7\) exceeds float16's range"):
        write_run(tmp_path / "r", run.oof_ids, big, run.test_ids, run.test, run.mean_embedding, run.metrics, [],
                  storage="float16")
    assert not (tmp_path / "r").exists()  # checked before anything was written
    write_run(tmp_path / "r", run.oof_ids, big, run.test_ids, run.test, run.mean_embedding, run.metrics, [])
    manifest = json.loads((tmp_path / "r" / RUN_MANIFEST).read_text())
    manifest[PREDICTIONS_DTYPE] = "float16"  # a manifest that does not describe its files
    (tmp_path / "r" / RUN_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"oof\.npy: dtype float32, but manifest\.json records float16"):
        load_run(tmp_path / "r")
