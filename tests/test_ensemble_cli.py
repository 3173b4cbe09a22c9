"""ensemble/ on real files: run directories written by core.runs, the CLI, input validation, LightGBM stacker."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from core.errors import DataError
from core.io import sha256_file, write_json
from core.runs import OOF_FILE, RUN_MANIFEST
from core.submission import read_submission
from ensemble.apply import apply_ensemble
from ensemble.data import StackData
from ensemble.fit import LGBM_AUTO_MAX_ROWS, main, methods_to_run
from ensemble.inputs import load_inputs
from tests import synthetic as S
from tests.helpers import assert_one_error_line

N, N_TEST = 600, 40
FAST = ["--shrinkage-grid", "1,0", "--ridge-alphas", "3", "--quiet"]


def project(tmp_path, **kw):
    kw.setdefault("n", N)
    kw.setdefault("n_test", N_TEST)
    return S.write_synthetic_project(tmp_path, **kw)


def corrupt_oof(run_dir, row, value=np.nan):
    """Put a NaN into a finished run's oof.npy and keep its manifest consistent (write_run refuses NaN)."""
    arr = np.load(run_dir / OOF_FILE)
    arr[row, 3] = value
    np.save(run_dir / OOF_FILE, arr)
    manifest = json.loads((run_dir / RUN_MANIFEST).read_text())
    manifest[OOF_FILE] = sha256_file(run_dir / OOF_FILE)
    write_json(run_dir / RUN_MANIFEST, manifest)


def test_cli_end_to_end(tmp_path, capsys):
    p = project(tmp_path)
    out = tmp_path / "ens"
    assert main(["--runs", *map(str, p["runs"]), "--out", str(out), "--no-lgbm", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "chosen:" in printed and "model:model0" in printed
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores["methods"]) == {"equal", "per_model", "per_dim", "ridge"}
    for entry in list(scores["methods"].values()) + list(scores["single_models"].values()):
        assert len(entry["per_fold"]) == 5 and -1 <= entry["overall"] <= 1
    assert scores["chosen_method"] == max(scores["methods"], key=lambda m: scores["methods"][m]["overall"])
    assert set(scores["single_models"]) == {"model0", "model1", "model2"}
    assert scores["n_oof"] == N and scores["n_test"] == N_TEST
    assert scores["folds_file"]["sha256"] == sha256_file(p["folds"])
    # submission: every test id, unit-norm rows, equal to re-applying the saved ensemble
    ids, emb = read_submission(out / "submission.csv")
    assert ids == p["test_ids"]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    again = apply_ensemble(out, {f"model{m}": p["X_test"][m] for m in range(3)})
    np.testing.assert_allclose(again, emb, atol=1e-6)
    weights = pd.read_csv(out / "weights.csv")
    assert list(weights.columns) == ["dim", "model0", "model1", "model2"] and len(weights) == 384


def test_alignment_is_by_img_id_not_row_order(tmp_path):
    p = project(tmp_path / "a")
    q = project(tmp_path / "b")
    # rewrite run 1 of project b with rows shuffled (OOF and test): same predictions per imgId
    from core.runs import load_run, write_run

    run = load_run(q["runs"][1])
    rng = np.random.default_rng(0)
    perm, tperm = rng.permutation(N), rng.permutation(N_TEST)
    write_run(q["runs"][1], [run.oof_ids[i] for i in perm], run.oof[perm], [run.test_ids[i] for i in tperm],
              run.test[tperm], run.mean_embedding, run.metrics, [])
    a = load_inputs(p["runs"])
    b = load_inputs(q["runs"])
    assert a.data.ids == b.data.ids
    np.testing.assert_array_equal(a.data.to_memory().X, b.data.to_memory().X)  # the rows as the stacker reads them
    np.testing.assert_array_equal(a.test, b.test)


def test_differing_oof_ids_are_a_clear_error(tmp_path, capsys):
    ids = S.make_ids(N)
    other = list(ids)
    other[7] = "stranger"
    p = project(tmp_path, run_ids=[ids, other, ids])
    with pytest.raises(DataError) as e:
        load_inputs(p["runs"])
    msg = str(e.value)
    assert "OOF imgIds differ" in msg and "model0" in msg and "model1" in msg
    assert ids[7] in msg and "stranger" in msg
    assert main(["--runs", *map(str, p["runs"]), "--out", str(tmp_path / "ens"), *FAST]) == 2
    assert "stranger" in capsys.readouterr().err


def test_differing_test_ids_are_a_clear_error(tmp_path):
    t_ids = S.make_ids(N_TEST, prefix="test")
    p = project(tmp_path, test_ids=[t_ids, t_ids, t_ids[:-1] + ["testXYZ"]])
    with pytest.raises(DataError, match=r"test imgIds differ.*testXYZ"):
        load_inputs(p["runs"])


def test_runs_on_different_folds_are_refused(tmp_path):
    p = project(tmp_path)
    metrics_path = p["runs"][2] / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["folds"]["sha256"] = "0" * 64
    write_json(metrics_path, metrics)
    manifest = json.loads((p["runs"][2] / RUN_MANIFEST).read_text())
    manifest["metrics.json"] = sha256_file(metrics_path)
    write_json(p["runs"][2] / RUN_MANIFEST, manifest)
    with pytest.raises(DataError, match="different folds.*leaks"):
        load_inputs(p["runs"])


def test_folds_option_must_be_the_folds_the_runs_used(tmp_path):
    p = project(tmp_path)
    other = tmp_path / "other_folds.csv"
    pd.DataFrame({"imgId": p["ids"], "fold": (np.arange(N) + 1) % 5}).to_csv(other, index=False)
    with pytest.raises(DataError, match="not the folds run model0 was trained on"):
        load_inputs(p["runs"], folds=other)
    assert load_inputs(p["runs"], folds=p["folds"]).data.n_rows == N


def test_nan_in_a_prediction_is_a_clear_error(tmp_path, capsys):
    p = project(tmp_path)
    corrupt_oof(p["runs"][1], 11)
    with pytest.raises(DataError, match=r"model1.*oof.npy: NaN or inf in the prediction for imgId .* \(row 11\)"):
        load_inputs(p["runs"])
    assert main(["--runs", *map(str, p["runs"]), "--out", str(tmp_path / "ens"), *FAST]) == 2
    assert "NaN" in capsys.readouterr().err
    assert not (tmp_path / "ens" / "submission.csv").exists()


def test_nan_in_targets_names_the_image(tmp_path):
    p = project(tmp_path)
    T = np.load(p["targets"] / "targets.npy")
    T[5, 0] = np.inf
    np.save(p["targets"] / "targets.npy", T)
    with pytest.raises(DataError, match=f"imgId '{p['ids'][5]}'"):
        load_inputs(p["runs"])


def test_targets_and_folds_options_override_metrics(tmp_path):
    p = project(tmp_path)
    moved = tmp_path / "elsewhere"
    p["targets"].rename(moved)
    with pytest.raises(DataError, match="missing"):
        load_inputs(p["runs"])
    assert load_inputs(p["runs"], targets=moved).targets_path == moved


def test_auto_includes_lgbm_only_for_small_oof_sets():
    assert "lgbm" in methods_to_run("auto", "auto", 2000)[0]
    assert "lgbm" not in methods_to_run("auto", "auto", LGBM_AUTO_MAX_ROWS + 1)[0]
    assert "lgbm" in methods_to_run("auto", "on", 10 ** 6)[0]
    assert "lgbm" not in methods_to_run("auto", "off", 100)[0]
    assert methods_to_run("per_dim", "auto", 100)[0] == ["equal", "per_model", "per_dim"]
    assert methods_to_run("ridge", "auto", 100)[0] == ["equal", "per_model", "ridge"]
    assert "ridge" in methods_to_run("auto", "off", 10 ** 6)[0]


def test_lgbm_stacker_fits_predicts_and_round_trips(tmp_path):
    from ensemble.lgbm_stacker import (
        fit_lgbm_stacker,
        lgbm_cosine_sum,
        load_lgbm_stacker,
        predict_lgbm_stacker,
        save_lgbm_stacker,
    )
    from ensemble.nested_cv import nested_cv

    n, d = 1500, 8  # 8 dimensions keep it fast; the code is the same for 384
    T = S.make_targets(n, dim=d, seed=3)
    sigma = np.array([[0.5] * d, [2.0] * d], dtype=np.float32)
    X = S.make_predictions(T, sigma, seed=3)
    folds = np.sort(S.make_folds(n, k=4, seed=3))
    X /= np.linalg.norm(X, axis=2, keepdims=True)
    data = StackData(X, T, folds, ["good", "bad"])
    stacker = fit_lgbm_stacker(data, [1, 2, 3], seed=0)
    assert len(stacker.boosters) == d
    s, cnt = lgbm_cosine_sum(stacker, data, [0])
    single_good = float(np.einsum("nd,nd->n", X[0][folds == 0], T[folds == 0]).mean())
    assert s / cnt > single_good - 0.01
    save_lgbm_stacker(tmp_path / "st.json.gz", stacker)
    back = load_lgbm_stacker(tmp_path / "st.json.gz")
    np.testing.assert_allclose(predict_lgbm_stacker(back, X[:, :50]), predict_lgbm_stacker(stacker, X[:, :50]),
                               atol=1e-6)
    pred = predict_lgbm_stacker(stacker, X[:, :50])
    np.testing.assert_allclose(np.linalg.norm(pred, axis=1), 1.0, atol=1e-5)
    # in nested CV the stacker is scored only on folds it did not see
    result = nested_cv(data, methods=("equal", "lgbm"), refit=False, choose="lgbm", predict_oof=True)
    assert "lgbm" in result.methods
    for rec in result.ledger:
        if rec["kind"] in ("score", "predict"):
            assert rec["scored_fold"] not in rec["trained_on"]
    # its nested OOF predictions (each fold by the stacker fitted without it) give its nested score
    cos = np.einsum("nd,nd->n", result.oof_blend, T)
    np.testing.assert_allclose([cos[folds == k].mean() for k in range(4)], result.methods["lgbm"]["per_fold"],
                               atol=1e-5)
    # the CLI's writer: stacker + a linear fallback, ensemble.json pointing at the stacker
    from types import SimpleNamespace

    from ensemble.fit import write_outputs
    from ensemble.nested_cv import Fitted

    test_ids = [f"t{i}" for i in range(30)]
    fake = SimpleNamespace(final=Fitted("lgbm", frozenset(), stacker=stacker),
                           final_linear=Fitted("per_model", frozenset(), np.full((2, d), 0.5, np.float32)))
    inputs = SimpleNamespace(names=["good", "bad"], test=X[:, :30], test_ids=test_ids)
    out = tmp_path / "ens"
    write_outputs(out, fake, inputs)
    manifest = json.loads((out / "ensemble.json").read_text())
    assert manifest["method"] == "lgbm" and manifest["linear_fallback"]["method"] == "per_model"
    ids, emb = read_submission(out / "submission.csv", dim=d)
    assert ids == test_ids
    np.testing.assert_allclose(apply_ensemble(out, {"good": X[0, :30], "bad": X[1, :30]}), emb, atol=1e-6)


def test_cli_ridge_applies_like_scikit_learn_and_saves_the_oof_blend(tmp_path, capsys):
    """--method ridge: ridge.npz applied (numpy only) equals scikit-learn's Ridge.predict on the same rows;
    the OOF blend, drop-one scores and the command line land in the folder."""
    from sklearn.linear_model import Ridge

    from ensemble.apply import OOF_BLEND_FILE, OOF_BLEND_IDS_FILE, RIDGE_FILE
    from ensemble.ridge_stacker import features, load_ridge

    p = project(tmp_path, n=400, n_models=2, k=3)
    out = tmp_path / "ens"
    argv = ["--runs", *map(str, p["runs"]), "--out", str(out), "--method", "ridge", "--ridge-alphas", "10,1",
            "--shrinkage-grid", "1", "--quiet"]
    assert main(argv) == 0
    assert "ridge alpha per outer fold" in capsys.readouterr().out
    manifest = json.loads((out / "ensemble.json").read_text())
    assert manifest["method"] == "ridge" and manifest["file"] == RIDGE_FILE
    assert manifest["linear_fallback"]["file"] == "weights.npz" and (out / "weights.npz").is_file()
    stacker = load_ridge(out / RIDGE_FILE)
    assert stacker.models == ["model0", "model1"] and stacker.coef.shape == (384, 768)

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    scores = json.loads((out / "scores.json").read_text())
    assert stacker.alpha == scores["ridge"]["chosen_alpha"] == manifest["alpha"]
    # scikit-learn's Ridge fitted on the same (all) OOF rows, predicting the test rows
    ids = pd.read_csv(out / OOF_BLEND_IDS_FILE, dtype={"imgId": str})["imgId"].tolist()
    pos = {i: k for k, i in enumerate(p["ids"])}
    rows = [pos[i] for i in ids]
    ref = Ridge(alpha=stacker.alpha).fit(features(unit(p["X"][:, rows])), unit(p["T"][rows]))
    expected = unit(ref.predict(features(unit(p["X_test"]))))
    sub_ids, emb = read_submission(out / "submission.csv")
    assert sub_ids == p["test_ids"]
    np.testing.assert_allclose(emb, expected, atol=1e-4)
    applied = apply_ensemble(out, {"model0": p["X_test"][0], "model1": p["X_test"][1]})
    np.testing.assert_allclose(applied, expected, atol=1e-5)
    # the OOF blend: every id once, unit rows, its per-fold cosine = the nested score of the chosen method
    oof = np.load(out / OOF_BLEND_FILE)
    assert sorted(ids) == sorted(p["ids"]) and oof.shape == (400, 384) and oof.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(oof, axis=1), 1.0, atol=1e-5)
    cos = np.sum(oof * unit(p["T"][rows]), axis=1)
    fold = p["folds_array"][rows]
    np.testing.assert_allclose([cos[fold == k].mean() for k in scores["folds"]], scores["methods"]["ridge"]["per_fold"],
                               atol=1e-5)
    assert scores["oof_blend"] == {"method": "ridge", "file": OOF_BLEND_FILE, "ids_file": OOF_BLEND_IDS_FILE,
                                   "rows": 400}
    # no evaluation of the ridge stacker on a fold it was fitted on
    ridge_evals = [e for e in scores["evaluations"] if e.get("method") == "ridge"]
    assert {e["kind"] for e in ridge_evals} == {"score", "predict"}
    assert all(e["scored_fold"] not in e["trained_on"] for e in ridge_evals)
    assert set(scores["ridge"]["alpha_per_fold"]) == {"0", "1", "2"} and scores["ridge"]["alpha_grid"] == [10.0, 1.0]
    # drop-one: per model, per fold (keyed by fold) and overall; with two models it is the other model alone
    assert set(scores["drop_one"]) == {"model0", "model1"}
    per_fold = scores["drop_one"]["model0"]["per_fold"]
    assert list(per_fold) == ["0", "1", "2"]
    np.testing.assert_allclose(list(per_fold.values()), scores["single_models"]["model1"]["per_fold"], atol=1e-6)
    # the command line
    assert scores["argv"] == ["python", "-m", "ensemble.fit", *argv]
    assert "--method ridge" in scores["command"]


def test_ridge_alphas_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        main(["--runs", "x", "--ridge-alphas", "1,0"])
    assert "--ridge-alphas needs positive numbers" in capsys.readouterr().err


def _wrong_shape(run_dir):
    arr = np.load(run_dir / OOF_FILE)
    np.save(run_dir / OOF_FILE, arr[:, :383])
    manifest = json.loads((run_dir / RUN_MANIFEST).read_text())
    manifest[OOF_FILE] = sha256_file(run_dir / OOF_FILE)
    write_json(run_dir / RUN_MANIFEST, manifest)


@pytest.mark.parametrize("case, damage, expected", [
    ("wrong shape", _wrong_shape, r"oof\.npy: shape \(600, 383\), expected \(600, 384\)"),
    ("file changed under a finished run",
     lambda d: (d / "metrics.json").write_text((d / "metrics.json").read_text() + " "),
     r"metrics\.json: content differs from manifest\.json"),
    ("run without its manifest", lambda d: (d / RUN_MANIFEST).unlink(),
     r"manifest\.json: missing: the run is unfinished"),
    ("NaN", lambda d: corrupt_oof(d, 5), r"oof\.npy: NaN or inf"),
])
def test_each_bad_run_is_one_error_line_through_the_cli(tmp_path, capsys, case, damage, expected):
    """Through `python -m ensemble.fit`'s main, not only the functions: exit 2, one `error:` line naming the file."""
    p = project(tmp_path)
    damage(p["runs"][1])
    assert main(["--runs", *map(str, p["runs"]), "--out", str(tmp_path / "ens"), *FAST]) == 2, case
    line = assert_one_error_line(capsys.readouterr().err, str(p["runs"][1]), alone=True)
    assert re.search(expected, line), line
    assert not (tmp_path / "ens" / "submission.csv").exists()  # nothing written on bad input


@pytest.mark.parametrize("k, method, expected", [
    (1, "auto", r"fall in 1 fold\(s\) of this file; nested CV needs at least 2"),
    (2, "lgbm", r"--method lgbm needs at least 3 folds"),
])
def test_too_few_folds_is_one_error_line_naming_the_folds_file(tmp_path, capsys, k, method, expected):
    p = project(tmp_path, n=200, n_test=10, n_models=2, k=k)
    assert main(["--runs", *map(str, p["runs"]), "--out", str(tmp_path / "ens"), "--method", method, *FAST]) == 2
    line = assert_one_error_line(capsys.readouterr().err, alone=True)
    assert line.startswith(f"error: {p['folds']}: ") and re.search(expected, line), line
    assert not (tmp_path / "ens").exists()  # refused before any fit


def test_the_same_run_twice_is_one_error_line_naming_it(tmp_path, capsys):
    p = project(tmp_path, n=200, n_test=10, n_models=2)
    again = p["runs"][0].parent / ".." / p["runs"][0].parent.name / p["runs"][0].name
    assert main(["--runs", str(p["runs"][0]), str(again), "--out", str(tmp_path / "ens"), *FAST]) == 2
    line = assert_one_error_line(capsys.readouterr().err, alone=True)
    assert line == f"error: {again}: run directory given twice (also as {p['runs'][0]})"


def test_only_input_errors_become_one_line_a_bug_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    """The one error rule covers writing the outputs too (a full disk: one line, exit 2); any other exception,
    a ValueError included, is a bug and is raised with its traceback."""
    import ensemble.fit as fit
    from core.errors import WriteError

    p = project(tmp_path, n=200, n_test=10, n_models=2)
    argv = ["--runs", *map(str, p["runs"]), "--out", str(tmp_path / "ens"), "--method", "per_model", *FAST]

    def full_disk(out, result, inputs):
        raise WriteError(out / "submission.csv", "No space left on device", 28)

    monkeypatch.setattr(fit, "write_outputs", full_disk)
    assert fit.main(argv) == 2
    line = assert_one_error_line(capsys.readouterr().err, alone=True)
    assert line == f"error: {tmp_path / 'ens' / 'submission.csv'}: No space left on device"

    def bug(*args, **kwargs):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(fit, "nested_cv", bug)
    with pytest.raises(ValueError, match="a bug, not bad input"):
        fit.main(argv)
