"""oof.report on real files: synthetic runs written by core.runs, a real ensemble.fit, small real PNG images."""
import base64
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import html5lib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.io import sha256_file, write_json
from core.metric import cosine_scores, mean_cosine
from core.runs import LOG_FILE, RUN_MANIFEST, load_run, write_run
from core.targets import targets_for
from oof.report import stats
from oof.report.cli import main
from oof.report.failures import by_word, nearest_prompts
from oof.report.load import open_targets
from oof.report.text import PromptPieces, load_tokenizer, token_lengths
from tests.helpers import assert_one_error_line
from tests.synthetic import write_report_project

REPO = Path(__file__).resolve().parents[1]
N, N_TEST, K = 600, 40, 5
FAST = ["--bootstrap", "300", "--quiet"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """3 synthetic runs + a real ensemble.fit (per_dim) + images, and the full report built once."""
    from ensemble.fit import main as fit

    root = tmp_path_factory.mktemp("report_demo")
    p = write_report_project(root, N, m=3, k=K, n_test=N_TEST, images=True)
    ens = root / "ensemble"
    assert fit(["--runs", *map(str, p["runs"]), "--out", str(ens), "--method", "per_dim", "--shrinkage-grid", "1,0",
                "--no-lgbm", "--quiet"]) == 0
    unfinished = root / "runs" / "still_training"
    (unfinished / "folds" / "fold0").mkdir(parents=True)
    np.save(unfinished / "folds" / "fold0" / "oof.npy", np.zeros((3, 384), dtype=np.float32))
    out = root / "report"
    args = ["--runs", *map(str, p["runs"]), str(unfinished), "--ensemble", str(ens), "--test-targets",
            str(p["test_targets"]), "--out", str(out), *FAST]
    # in a fresh interpreter, to check that the report imports neither torch nor transformers
    code = ("import sys; from oof.report.cli import main; rc = main(sys.argv[1:]); "
            "bad = [m for m in ('torch', 'transformers', 'models') if m in sys.modules]; "
            "print('imported:', bad); sys.exit(rc or (3 if bad else 0))")
    res = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    return dict(p, ensemble=ens, out=out, unfinished=unfinished, report=json.loads((out / "report.json").read_text()))


def table(report, section, key):
    t = report["sections"][section]["tables"][key]
    return [dict(zip(t["columns"], row)) for row in t["rows"]]


def check_html(path):
    """Parse strictly (html5lib raises on any parse error); every <img> an embedded, valid PNG. Returns the imgs."""
    text = path.read_text()
    parser = html5lib.HTMLParser(strict=True)
    doc = parser.parse(text)
    assert not parser.errors
    imgs = doc.findall(".//{http://www.w3.org/1999/xhtml}img")
    for img in imgs:
        src = img.get("src")
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True))) as im:
            im.verify()
    assert "<script" not in text.lower() and not re.search(r'(src|href)="(http|//|file:)', text)
    return imgs


def test_html_is_self_contained_and_every_image_is_an_embedded_png(demo):
    imgs = check_html(demo["out"] / "report.html")
    thumbs = [i for i in imgs if i.get("alt", "").startswith("image ")]
    assert len(thumbs) == 24 and len(imgs) >= 24 + 8  # the 12 best + 12 worst thumbnails, and the figures
    for name in ("summary.md", "report.json"):
        assert (demo["out"] / name).stat().st_size > 0
    assert "| model | kind |" in (demo["out"] / "summary.md").read_text()


def test_scoreboard_equals_the_metric_recomputed_from_the_oof_files(demo):
    rows = {r["model"]: r for r in table(demo["report"], "scoreboard", "scoreboard")}
    T = targets_for(demo["targets"], demo["ids"])
    folds = demo["folds_array"]
    for run_dir in demo["runs"]:
        run = load_run(run_dir)
        scores = cosine_scores(np.asarray(run.oof), T)
        row = rows[run.name]
        assert row["OOF cosine"] == pytest.approx(mean_cosine(run.oof, T), abs=1e-6)
        for f in range(K):
            assert row[f"fold {f}"] == pytest.approx(float(scores[folds == f].mean()), abs=1e-6)
        test_t = targets_for(demo["test_targets"], run.test_ids)
        assert row["test"] == pytest.approx(mean_cosine(run.test, test_t), abs=1e-6)
    # the constant baseline: what models.mean_baseline writes for the same targets and folds
    from models.mean_baseline import mean_baseline_predictions

    oof, _ = mean_baseline_predictions(T, folds)
    assert rows[stats.BASELINE]["OOF cosine"] == pytest.approx(mean_cosine(oof, T), abs=1e-6)
    # the chosen stacker's row, recomputed from oof_blend.npy, equals ensemble.fit's nested-CV score
    scores_json = json.loads((demo["ensemble"] / "scores.json").read_text())
    chosen = f"ensemble ({scores_json['chosen_method']})"
    assert rows[chosen]["OOF cosine"] == pytest.approx(scores_json["methods"][scores_json["chosen_method"]]["overall"],
                                                       abs=1e-6)
    assert rows[chosen]["kind"].endswith("(chosen)") and rows[chosen]["test"] is not None


def test_unfinished_run_is_listed_not_read(demo):
    rows = {r["model"] for r in table(demo["report"], "scoreboard", "scoreboard")}
    assert "still_training" not in rows
    assert demo["report"]["meta"]["unfinished_runs"] == [str(demo["unfinished"])]
    assert str(demo["unfinished"]) in (demo["out"] / "report.html").read_text()


# What each section holds for 3 runs, K folds, a per_dim stacker fitted on a 2-value shrinkage grid:
# {section: ({table: rows, None: at least one}, figures)}. The failures figures: a histogram + 12 + 12 thumbnails.
FILLED = {
    "scoreboard": ({"scoreboard": 3 + 4}, 0),  # the runs, the ensemble's 3 methods, the constant baseline
    "differences": ({"differences": 1 + 3, "fold_differences": 1 + 3}, 0),  # ensemble vs best + every pair
    "learning": ({"learning_curves": 3 * K}, 3),  # a row per run and fold, a figure per run
    "distributions": ({"distribution": 3 + 2}, 1),  # the runs, the ensemble, the baseline
    "diversity": ({"residual_correlation": 3, "drop_one": 3}, 2),
    "stacker": ({"cv_by_shrinkage": 2, "model_weights": 3, "shrinkage_per_fold": K}, 1),
    "failures": ({"by_length": None, "by_source": None, "by_word": 30}, 1 + 24),
    "provenance": ({"provenance_runs": 3, "provenance_ensemble": 1, "provenance_inputs": None, "unfinished": 1}, 0),
}


def test_sections_are_filled(demo):
    sections = demo["report"]["sections"]
    assert sorted(sections) == sorted(FILLED)
    html = (demo["out"] / "report.html").read_text()
    for key, (tables, figures) in FILLED.items():
        assert sorted(sections[key]["tables"]) == sorted(tables), key
        for name, n_rows in tables.items():
            t = sections[key]["tables"][name]
            assert len(t["rows"]) == n_rows if n_rows is not None else len(t["rows"]) >= 1, (key, name)
            for col, values in zip(t["columns"], zip(*t["rows"])):  # no column left empty
                assert any(v not in (None, "") for v in values), (key, name, col)
        body = re.search(rf'<section id="{key}">(.*?)</section>', html, flags=re.S).group(1)
        assert body.count("<figure") == figures, key
    pairs = table(demo["report"], "differences", "differences")
    assert pairs[0]["A"].startswith("ensemble (")
    assert len(sections["failures"]["galleries"]["best"]) == len(sections["failures"]["galleries"]["worst"]) == 12
    assert {r["model"] for r in table(demo["report"], "diversity", "drop_one")} == set(demo["names"])
    prov = table(demo["report"], "provenance", "provenance_runs")
    assert all(r["command line"].startswith("python -m models.train") for r in prov)


def test_bootstrap_interval_of_a_run_against_itself_is_zero_and_planted_gain_excludes_zero(demo, tmp_path):
    a = demo["runs"][0]
    same = tmp_path / "same"
    shutil.copytree(a, same)
    assert main(["--compare", str(a), str(same), "--out", str(tmp_path / "c0"), *FAST]) == 0
    d = json.loads((tmp_path / "c0" / "report.json").read_text())["meta"]["difference"]
    assert d["diff"] == 0.0 and d["ci_low"] == 0.0 and d["ci_high"] == 0.0

    # B: A's unit predictions pulled toward the target, +0.02 mean cosine (per-image gains vary)
    run = load_run(a)
    T = targets_for(demo["targets"], run.oof_ids)
    P = np.asarray(run.oof) / np.linalg.norm(run.oof, axis=1, keepdims=True)
    base = cosine_scores(P, T).mean()
    lo, hi = 0.0, 1.0
    for _ in range(40):
        c = (lo + hi) / 2
        lo, hi = (c, hi) if cosine_scores(P + c * T, T).mean() - base < 0.02 else (lo, c)
    better = tmp_path / "better"
    write_run(better, run.oof_ids, P + c * T, run.test_ids, run.test, run.mean_embedding, run.metrics, [])
    assert main(["--compare", str(a), str(better), "--out", str(tmp_path / "c1"), *FAST]) == 0
    d = json.loads((tmp_path / "c1" / "report.json").read_text())["meta"]["difference"]
    assert d["diff"] == pytest.approx(0.02, abs=1e-4)
    assert 0 < d["ci_low"] < 0.02 < d["ci_high"]
    # the scatter, the length figure, A's learning curves (B logged none), 12 + 12 most changed images
    assert len(check_html(tmp_path / "c1" / "report.html")) == 1 + 1 + 1 + 24


def test_bootstrap_means_are_the_means_of_resampled_groups():
    """Each resample: G groups drawn with replacement (rng.integers(0, G), BOOT_CHUNK resamples' draws at a time,
    as the report has always drawn them, so a seed gives the same intervals), the mean over the drawn groups' rows."""
    rng = np.random.default_rng(5)
    groups = rng.integers(0, 40, size=300)
    values = [rng.random(300), rng.random(300)]
    boot = stats.bootstrap_means(values, groups, n_boot=60, seed=3)  # 60: two full chunks of 25 and a short one
    codes = stats.group_codes(groups)
    draw = np.random.default_rng(3)
    expected = []
    for b0 in range(0, 60, stats.BOOT_CHUNK):
        for drawn in draw.integers(0, codes.max() + 1, size=(min(stats.BOOT_CHUNK, 60 - b0), codes.max() + 1)):
            rows = np.concatenate([np.flatnonzero(codes == g) for g in drawn])
            expected.append([v[rows].mean() for v in values])
    np.testing.assert_allclose(boot, expected, rtol=1e-12)


def test_group_bootstrap_resamples_groups():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(200), 5)  # 5 identical copies per group: only 200 independent values
    a = np.repeat(rng.normal(0, 0.1, 200), 5)
    boot = stats.bootstrap_means([a, a + 0.02, np.zeros_like(a)], groups, n_boot=400, seed=1)
    d_self = stats.difference(a, a, boot[:, 0], boot[:, 0], groups % 5, [0, 1, 2, 3, 4])
    assert d_self["ci_low"] == d_self["ci_high"] == 0.0
    d = stats.difference(a + 0.02, a, boot[:, 1], boot[:, 0], groups % 5, [0, 1, 2, 3, 4])
    assert d["ci_low"] == pytest.approx(0.02) and d["ci_high"] == pytest.approx(0.02)
    # the interval of a mean reflects 200 groups, not 1,000 images
    width = np.subtract(*np.percentile(boot[:, 0], [97.5, 2.5]))
    assert width == pytest.approx(2 * 1.96 * a[::5].std() / np.sqrt(200), rel=0.25)


def test_nearest_prompt_of_a_perfect_prediction_is_the_true_prompt(demo, tmp_path):
    run = load_run(demo["runs"][0])
    T = targets_for(demo["targets"], run.oof_ids)
    oracle = tmp_path / "runs" / "oracle"
    write_run(oracle, run.oof_ids, T, run.test_ids, run.test, run.mean_embedding, run.metrics, [])
    assert main(["--runs", str(oracle), str(demo["runs"][1]), "--out", str(tmp_path / "r"), *FAST]) == 0
    galleries = json.loads((tmp_path / "r" / "report.json").read_text())["sections"]["failures"]["galleries"]
    for card in galleries["best"] + galleries["worst"]:
        assert card["nearest_prompt"] == card["prompt"] and card["nearest_cosine"] == pytest.approx(1.0, abs=1e-5)
    bank_ids, bank = open_targets(demo["targets"])
    rows, cos = nearest_prompts(T[[5, 77, 300]], bank)
    assert [bank_ids[r] for r in rows] == [run.oof_ids[i] for i in (5, 77, 300)]


def test_missing_test_targets_leave_the_test_columns_out(demo, tmp_path):
    assert main(["--runs", *map(str, demo["runs"][:2]), "--out", str(tmp_path / "r"), *FAST]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert "test" not in report["sections"]["scoreboard"]["tables"]["scoreboard"]["columns"]
    assert "OOF cosine" in report["sections"]["scoreboard"]["tables"]["scoreboard"]["columns"]


def test_compare_refuses_runs_with_other_ids_or_folds(demo, tmp_path, capsys):
    other_ids = write_report_project(tmp_path / "ids", N - 10, m=1, k=K, n_test=N_TEST)
    assert main(["--compare", str(demo["runs"][0]), str(other_ids["runs"][0]), "--out", str(tmp_path / "c")]) == 2
    assert_one_error_line(capsys.readouterr().err, "imgIds differ", alone=True)
    other_folds = write_report_project(tmp_path / "folds", N, m=1, k=K, n_test=N_TEST, seed=1)
    assert main(["--compare", str(demo["runs"][0]), str(other_folds["runs"][0]), "--out", str(tmp_path / "c")]) == 2
    assert_one_error_line(capsys.readouterr().err, "different folds", alone=True)
    assert main(["--compare", str(demo["runs"][0]), str(demo["unfinished"]), "--out", str(tmp_path / "c")]) == 2
    assert_one_error_line(capsys.readouterr().err, "unfinished", alone=True)


def test_bad_input_is_one_error_line_and_exit_2(demo, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(demo["runs"][1], broken)
    (broken / LOG_FILE).unlink()
    assert main(["--runs", str(demo["runs"][0]), str(broken), "--out", str(tmp_path / "r")]) == 2
    assert_one_error_line(capsys.readouterr().err, f"{broken / LOG_FILE}: missing", alone=True)
    ens = tmp_path / "ens"
    shutil.copytree(demo["ensemble"], ens)
    ids = pd.read_csv(ens / "oof_blend_ids.csv", dtype=str)
    ids.iloc[:-1].to_csv(ens / "oof_blend_ids.csv", index=False)
    assert main(["--runs", *map(str, demo["runs"]), "--ensemble", str(ens), "--out", str(tmp_path / "r")]) == 2
    assert_one_error_line(capsys.readouterr().err, "oof_blend_ids.csv: imgIds differ", alone=True)
    # misaligned: a run whose manifest is valid but whose ids are another set
    shifted = tmp_path / "shifted"
    run = load_run(demo["runs"][2])
    write_run(shifted, ["x" + i for i in run.oof_ids], run.oof, run.test_ids, run.test, run.mean_embedding,
              run.metrics, [])
    assert main(["--runs", str(demo["runs"][0]), str(shifted), "--out", str(tmp_path / "r")]) == 2
    assert_one_error_line(capsys.readouterr().err, "imgIds differ", alone=True)
    manifest = json.loads((shifted / RUN_MANIFEST).read_text())
    manifest["oof.npy"] = "0" * 64
    write_json(shifted / RUN_MANIFEST, manifest)
    assert main(["--runs", str(shifted), "--out", str(tmp_path / "r")]) == 2
    assert_one_error_line(capsys.readouterr().err, "content differs from manifest.json", alone=True)
    assert sha256_file(shifted / "oof.npy") != "0" * 64


def test_token_lengths_match_the_minilm_tokenizer_on_real_prompts(kaggle_sample):
    from transformers import AutoTokenizer

    from core.targets import default_embedder_path

    tok, max_len = load_tokenizer()
    prompts = pd.read_csv(kaggle_sample / "prompts.csv")["prompt"].tolist()
    prompts += ["a\tcat  on\u00a0a mat", "Ünïcödé café, 東京 at night!!", "x", "don't stop-motion 3.5mm f/1.8",
                " ".join(["word"] * 300)]
    auto = AutoTokenizer.from_pretrained(default_embedder_path(), local_files_only=True)
    expected = [len(ids) for ids in auto(prompts, truncation=False)["input_ids"]]
    assert token_lengths(PromptPieces(prompts + prompts[:3]), tok).tolist() == expected + expected[:3]
    assert max_len == 256 and expected[-1] == 302


def test_by_word_means_and_order():
    prompts = ["red cat", "red dog", "blue cat", "the cat"]
    rows = by_word(PromptPieces(prompts), {"m": np.array([0.1, 0.3, 0.4, 0.9])}, "m", top=3)
    # top 3 by number of prompts: cat (3), red (2), then blue (1, ties by name); "the" is a stop word
    assert [(r[0], r[1]) for r in rows] == [("red", 2), ("blue", 1), ("cat", 3)]  # worst first
    assert [r[3] for r in rows] == pytest.approx([0.2, 0.4, 1.4 / 3])


def test_by_word_equals_count_vectorizer_on_real_prompts(kaggle_sample):
    from sklearn.feature_extraction.text import CountVectorizer

    lines = (kaggle_sample.parent / "prompts" / "prompts_chatgpt_0330_dedup.txt").read_text().splitlines()[:3000]
    prompts = lines + lines[:500]  # duplicates count once per image
    v = np.random.default_rng(0).random(len(prompts))
    rows = by_word(PromptPieces(prompts), {"m": v}, "m")
    cv = CountVectorizer(binary=True, stop_words="english")
    x = cv.fit_transform(prompts)
    vocab = list(cv.get_feature_names_out())
    df = np.asarray(x.sum(axis=0)).ravel()
    assert sorted(r[1] for r in rows) == sorted(np.sort(df)[-30:].tolist())
    for word, n, _, mean in rows:
        col = x[:, vocab.index(word)].toarray().ravel().astype(bool)
        assert n == col.sum() and mean == pytest.approx(v[col].mean())


def test_ridge_stacker_tables(tmp_path):
    from ensemble.apply import RIDGE_FILE
    from ensemble.ridge_stacker import RidgeStacker, save_ridge
    from oof.report.ensemble_sections import ridge_items
    from oof.report.load import EnsembleInfo

    d = 384
    own = np.hstack([0.7 * np.eye(d), 0.3 * np.eye(d)])  # model a: 0.7, model b: 0.3 on its own dimension only
    mixed = own.copy()
    mixed[:, d:] += 0.3 / np.sqrt(d - 1) * (1 - np.eye(d))  # model b also draws on every other dimension
    save_ridge(tmp_path / RIDGE_FILE, RidgeStacker(["a", "b"], mixed.astype(np.float32), np.zeros(d, np.float32), 3.0))
    ens = EnsembleInfo(tmp_path, {"method": "ridge"}, {"ridge": {"alpha_per_fold": {"0": 3.0, "1": 1.0}}})
    items = ridge_items(ens, ens.scores)
    alphas, blocks = items[0], items[1]
    assert alphas.rows == [["0", 3.0], ["1", 1.0]]
    rows = {r[0]: r for r in blocks.rows}
    assert rows["a"][1] == pytest.approx(0.7) and rows["a"][2] == pytest.approx(0.0, abs=1e-6)
    assert rows["b"][1] == pytest.approx(0.3) and rows["b"][2] == pytest.approx(0.5, abs=1e-3)  # 0.09 own, 0.09 mixed


def test_compare_two_ensembles_pairs_their_nested_cv_blends(demo, tmp_path):
    """--compare of two ensemble folders: B - A of their oof_blend.npy rows, per image, bootstrapped over groups."""
    from core.ids import read_ids
    from ensemble.fit import main as fit

    smaller = tmp_path / "without_one"
    assert fit(["--runs", *map(str, demo["runs"][:2]), "--out", str(smaller), "--method", "per_dim",
                "--shrinkage-grid", "1,0", "--no-lgbm", "--quiet"]) == 0
    assert main(["--compare", str(smaller), str(demo["ensemble"]), "--out", str(tmp_path / "c"), *FAST]) == 0
    d = json.loads((tmp_path / "c" / "report.json").read_text())["meta"]["difference"]
    by_hand = []
    for ens in (smaller, demo["ensemble"]):
        ids = read_ids(ens / "oof_blend_ids.csv")
        by_hand.append(mean_cosine(np.load(ens / "oof_blend.npy"), targets_for(demo["targets"], ids)))
    assert d["diff"] == pytest.approx(by_hand[1] - by_hand[0], abs=1e-6)
    assert d["ci_low"] <= d["diff"] <= d["ci_high"] and d["ci_low"] < d["ci_high"]
    diff = table(json.loads((tmp_path / "c" / "report.json").read_text()), "change", "config_diff")
    assert [r["config key"] for r in diff] == ["models", "nested_cv_cosine"]
    with pytest.raises(SystemExit):  # one of each: refused
        main(["--compare", str(smaller), str(demo["runs"][0]), "--out", str(tmp_path / "x"), *FAST])


def test_each_prediction_file_is_read_once_float16_runs_too(tmp_path, monkeypatch):
    """One pass over every run's oof.npy and the ensemble's OOF blend feeds every section (the per-image scores, the
    baseline, the residual correlation, the bootstrap); only the best and worst images' rows are read again."""
    from core.rows import NpyRows
    from ensemble.apply import OOF_BLEND_FILE
    from ensemble.fit import main as fit
    from oof.report.failures import N_EXTREMES

    n = 400
    p = write_report_project(tmp_path, n, m=2, k=3, n_test=20, storage="float16")
    assert load_run(p["runs"][0]).oof.dtype == np.float16
    ens = tmp_path / "ensemble"
    assert fit(["--runs", *map(str, p["runs"]), "--out", str(ens), "--method", "per_model", "--quiet"]) == 0
    rows_read = {}
    real_file_rows, real_gather = NpyRows._file_rows, NpyRows._gather

    def count(path, k):  # a run's oof.npy under its run's name
        key = Path(path).parent.name if Path(path).name == "oof.npy" else Path(path).name
        rows_read[key] = rows_read.get(key, 0) + k

    def file_rows(self, start, stop):
        count(self.path, stop - start)
        return real_file_rows(self, start, stop)

    def gather(self, rows):
        count(self.path, len(rows))
        return real_gather(self, rows)

    monkeypatch.setattr(NpyRows, "_file_rows", file_rows)
    monkeypatch.setattr(NpyRows, "_gather", gather)
    assert main(["--runs", *map(str, p["runs"]), "--ensemble", str(ens), "--out", str(tmp_path / "report"),
                 "--bootstrap", "100", "--quiet"]) == 0
    extremes = 2 * N_EXTREMES  # the report's reference (the ensemble's blend) shows its best and worst images
    assert rows_read["model0"] == rows_read["model1"] == n
    assert rows_read[OOF_BLEND_FILE] == n + extremes
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    rows = {r["model"]: r for r in table(report, "scoreboard", "scoreboard")}
    T = targets_for(p["targets"], p["ids"])
    for name in ("model0", "model1"):
        run = load_run(tmp_path / "runs" / name)
        assert rows[name]["OOF cosine"] == pytest.approx(mean_cosine(run.oof, T), abs=1e-6)
    assert table(report, "diversity", "residual_correlation")[0]["model1"] < 1.0


def test_nan_in_an_oof_file_is_one_error_line_from_the_pass(tmp_path, capsys):
    """The load leaves the OOF values to the one pass: a NaN there is still one `error: <file>: ...` line naming
    the image, for a run's oof.npy and for the ensemble's OOF blend, and no report is written."""
    from ensemble.apply import OOF_BLEND_FILE
    from ensemble.fit import main as fit

    p = write_report_project(tmp_path, 300, m=2, k=3, n_test=10)
    ens = tmp_path / "ensemble"
    assert fit(["--runs", *map(str, p["runs"]), "--out", str(ens), "--method", "per_model", "--quiet"]) == 0
    blend = np.load(ens / OOF_BLEND_FILE)
    blend[5, 1] = np.inf
    np.save(ens / OOF_BLEND_FILE, blend)
    run = p["runs"][1]
    oof = np.load(run / "oof.npy")
    oof[17, 3] = np.nan
    np.save(run / "oof.npy", oof)
    manifest = json.loads((run / RUN_MANIFEST).read_text())
    manifest["oof.npy"] = sha256_file(run / "oof.npy")
    write_json(run / RUN_MANIFEST, manifest)
    args = ["--runs", *map(str, p["runs"]), "--out", str(tmp_path / "report"), "--quiet"]
    assert main(args) == 2
    line = assert_one_error_line(capsys.readouterr().err, str(run / "oof.npy"), alone=True)
    assert f"NaN or inf in the prediction for imgId {p['ids'][17]!r} (row 17)" in line
    out = tmp_path / "report"
    assert main(["--runs", str(p["runs"][0]), "--ensemble", str(ens), "--out", str(out), "--quiet"]) == 2
    line = assert_one_error_line(capsys.readouterr().err, str(ens / OOF_BLEND_FILE), alone=True)
    assert "NaN or inf in the prediction for imgId" in line
    assert not (tmp_path / "report").exists()


def test_word_pairs_are_the_same_whatever_the_block_of_prompts(kaggle_sample):
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    from oof.report.text import word_pairs

    lines = (kaggle_sample.parent / "prompts" / "prompts_chatgpt_0330_dedup.txt").read_text().splitlines()[:400]
    pieces = PromptPieces(lines + lines[:50] + ["", "the a", "cat cat cat"])
    whole = word_pairs(pieces, ENGLISH_STOP_WORDS, block=10 ** 6)
    assert len(whole[0]) > 1000 and np.all(np.diff(whole[0] * len(whole[2]) + whole[1]) > 0)  # sorted, each once
    for block in (1, 7, 64):
        parts = word_pairs(pieces, ENGLISH_STOP_WORDS, block=block)
        assert parts[2] == whole[2]
        assert np.array_equal(parts[0], whole[0]) and np.array_equal(parts[1], whole[1])
