"""models.predict / models.submit on a test folder with unreadable images: one error listing them all,
or (--skip-bad-images) every row written, the unreadable ones given the runs' mean embedding."""
import shutil

import numpy as np
import pytest

from core.dataset import BAD_IMAGES_FILE, load_images, read_bad_images
from core.metric import l2_normalize
from core.runs import MEAN_FILE
from core.submission import read_submission
from ensemble.apply import apply_ensemble
from models.config import load_config
from models.predict import main as predict_main
from models.predict import predict_images
from models.submit import main as submit_main
from models.submit import make_submission
from models.train import train_run
from tests.helpers import assert_one_error_line
from tests.model_fixtures import REPO, make_tiny_project, tiny_overrides

BROKEN = 2  # test images overwritten with text bytes


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = make_tiny_project(tmp_path_factory.mktemp("skip"), n_train=24, n_test=6)
    runs = root / "runs"
    train_run(load_config(REPO / "configs/convnext_demo.yaml", tiny_overrides(root, runs / "convnext_demo")),
              progress=False)
    from ensemble.fit import main as fit_main
    from models.mean_baseline import main as mean_baseline

    assert mean_baseline(["--train", str(root / "data" / "train"), "--test", str(root / "data" / "test"),
                          "--targets", str(root / "targets"), "--folds", str(root / "folds.csv"),
                          "--out", str(runs / "mean_baseline")]) == 0
    ens = root / "ensemble"
    assert fit_main(["--runs", str(runs / "mean_baseline"), str(runs / "convnext_demo"), "--out", str(ens),
                     "--method", "per_model", "--quiet"]) == 0
    clean = root / "data" / "test"
    broken = root / "broken_test"
    shutil.copytree(clean, broken)
    frame = load_images(broken)
    bad_paths = frame["path"].tolist()[1:1 + BROKEN]
    for p in bad_paths:
        with open(p, "wb") as f:
            f.write(b"imgId,prompt\nnot an image at all\n")
    ok = ~frame["path"].isin(bad_paths).to_numpy()
    return {"root": root, "runs": runs, "ens": ens, "clean": clean, "broken": broken, "frame": frame,
            "bad": bad_paths, "ok": ok}


def test_predict_unreadable_image_is_one_error_listing_all(setup, tmp_path, capsys):
    out = tmp_path / "pred"
    rc = predict_main(["--run", str(setup["runs"] / "convnext_demo"), "--images", str(setup["broken"]),
                       "--out", str(out), "--workers", "0"])
    assert rc == 2
    # one line naming every bad image, not on the line of the scan's progress bar (on stderr too)
    assert_one_error_line(capsys.readouterr().err, "--skip-bad-images", *(p.rsplit("/", 1)[-1] for p in setup["bad"]))
    assert not out.exists()


def test_predict_skip_bad_images_writes_every_row(setup, tmp_path):
    run = setup["runs"] / "convnext_demo"
    out = tmp_path / "pred"
    assert predict_main(["--run", str(run), "--images", str(setup["broken"]), "--out", str(out), "--workers", "0",
                         "--skip-bad-images"]) == 0
    pred, ok = np.load(out / "pred.npy"), setup["ok"]
    assert pred.shape == (len(setup["frame"]), 384) and np.isfinite(pred).all()
    mean = l2_normalize(np.load(run / MEAN_FILE)[None])[0]
    np.testing.assert_allclose(pred[~ok], np.tile(mean, (BROKEN, 1)), atol=1e-6)
    clean = load_images(setup["clean"])["path"].tolist()
    want = predict_images(run, [p for p, k in zip(clean, ok) if k], workers=0, progress=False)
    np.testing.assert_allclose(pred[ok], want, atol=1e-5)  # the readable images: as if nothing were wrong
    listed = read_bad_images(out / BAD_IMAGES_FILE)
    assert listed["path"].tolist() == setup["bad"] and all("text" in r for r in listed["reason"])


def test_submit_unreadable_image_is_one_error(setup, tmp_path, capsys):
    out = tmp_path / "submission.csv"
    rc = submit_main(["--runs", str(setup["runs"] / "mean_baseline"), str(setup["runs"] / "convnext_demo"),
                      "--ensemble", str(setup["ens"]), "--images", str(setup["broken"]), "--out", str(out),
                      "--workers", "0"])
    assert rc == 2
    assert_one_error_line(capsys.readouterr().err, "--skip-bad-images", *(p.rsplit("/", 1)[-1] for p in setup["bad"]))
    assert not out.exists()


def test_submit_skip_bad_images_blends_the_mean_embeddings(setup, tmp_path):
    runs = [setup["runs"] / "mean_baseline", setup["runs"] / "convnext_demo"]
    out = tmp_path / "submission.csv"
    assert submit_main(["--runs", *map(str, runs), "--ensemble", str(setup["ens"]), "--images",
                        str(setup["broken"]), "--out", str(out), "--workers", "0", "--skip-bad-images"]) == 0
    ids, emb = read_submission(out)
    ok = setup["ok"]
    assert ids == setup["frame"]["imgId"].tolist()  # every image has its rows
    means = {r.name: np.tile(l2_normalize(np.load(r / MEAN_FILE)[None]), (BROKEN, 1)) for r in runs}
    np.testing.assert_allclose(emb[~ok], apply_ensemble(setup["ens"], means), atol=1e-5)
    _, clean = make_submission(runs, setup["ens"], setup["clean"], tmp_path / "clean.csv", progress=False, workers=0)
    np.testing.assert_allclose(emb[ok], clean[ok], atol=1e-5)
    assert read_bad_images(tmp_path / BAD_IMAGES_FILE)["path"].tolist() == setup["bad"]


def test_all_images_unreadable_still_gives_every_row(setup, tmp_path):
    folder = tmp_path / "all_bad"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(b"")
    runs = [setup["runs"] / "mean_baseline", setup["runs"] / "convnext_demo"]
    ids, blended = make_submission(runs, setup["ens"], folder, tmp_path / "s.csv", progress=False,
                                   skip_bad_images=True)
    assert ids == ["a", "b"]
    # every row is the ensemble's blend of the runs' mean embeddings, in the file as returned
    means = {r.name: np.tile(l2_normalize(np.load(r / MEAN_FILE)[None]), (2, 1)) for r in runs}
    np.testing.assert_allclose(blended, apply_ensemble(setup["ens"], means), atol=1e-5)
    written_ids, written = read_submission(tmp_path / "s.csv")
    assert written_ids == ids
    np.testing.assert_allclose(written, blended, atol=1e-6)
    assert len(read_bad_images(tmp_path / BAD_IMAGES_FILE)) == 2
