"""python -m datagen.filter on demo pairs scored by a tiny open_clip model trained for a few steps
(conftest tiny_clip)."""
import contextlib
import io
import logging
import os

import numpy as np
import pandas as pd
import pytest

from core.dataset import BAD_IMAGES_FILE, DROPPED_FILE, load_dataset
from datagen.filter import main
from datagen.filter.cut import HISTOGRAM_FILE, choose_cut
from tests.clip_fixtures import TINY_CLIP
from tests.helpers import assert_one_error_line


def run_filter(data, weights, out, *cut, model=TINY_CLIP):
    argv = ["--data", str(data), "--model", model, "--pretrained", str(weights), "--out", str(out), *cut,
            "--batch-size", "64", "--workers", "0", "--device", "cpu"]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stdout.getvalue(), stderr.getvalue()


def make_set(root, source, prompts_frame):
    """A training set whose images/ links to `source`'s images and whose prompts.csv is `prompts_frame`."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "images").exists():
        os.symlink(source / "images", root / "images")
    prompts_frame.to_csv(root / "prompts.csv", index=False)
    return root


@pytest.fixture(scope="module")
def filtered(tiny_clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("filter") / "view"
    code, stdout, _ = run_filter(tiny_clip.data / "train", tiny_clip.weights, out, "--drop-fraction", "0.1")
    assert code == 0
    return out, stdout


def read_scores(out):
    return pd.read_csv(out / "scores.csv", dtype={"imgId": str})


def test_true_pairs_score_above_shuffled_pairs(tiny_clip, filtered, tmp_path):
    from sklearn.metrics import roc_auc_score

    out, _ = filtered
    true = read_scores(out)
    assert true["imgId"].tolist() == tiny_clip.img_ids
    frame = pd.read_csv(tiny_clip.data / "train" / "prompts.csv", dtype={"imgId": str})
    order = np.random.default_rng(1).permutation(len(frame))
    perm = np.empty_like(order)
    perm[order] = np.roll(order, 1)  # every image gets another image's prompt
    shuffled = make_set(tmp_path / "shuffled", tiny_clip.data / "train",
                        frame.assign(prompt=frame["prompt"].to_numpy()[perm]))
    assert run_filter(shuffled, tiny_clip.weights, tmp_path / "shuffled_view", "--drop-fraction", "0")[0] == 0
    wrong = read_scores(tmp_path / "shuffled_view")["clip_score"].to_numpy()
    auc = roc_auc_score(np.r_[np.ones(len(true)), np.zeros(len(wrong))], np.r_[true["clip_score"], wrong])
    print(f"datagen.filter true-vs-shuffled AUC: {auc:.3f}")
    assert auc >= 0.75


def test_view_leaves_out_the_lowest_scores(tiny_clip, filtered, caplog):
    out, stdout = filtered
    scores = read_scores(out)
    lowest = scores.sort_values(["clip_score", "imgId"])["imgId"].head(20)
    dropped = pd.read_csv(out / DROPPED_FILE, dtype=str)
    assert sorted(dropped["imgId"]) == sorted(lowest) and list(dropped.columns) == ["imgId", "path", "reason"]
    assert os.path.realpath(out / "images") == os.path.realpath(tiny_clip.data / "train" / "images")
    with caplog.at_level(logging.WARNING):
        view = load_dataset(out)
    assert not caplog.records  # dropped.csv says the 20 images without a row are left out on purpose
    assert len(view) == 180 and not set(view["imgId"]) & set(lowest)
    assert list(view.columns) == ["imgId", "path", "prompt", "scene"]  # extra columns kept
    assert (out / HISTOGRAM_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stdout.count("\n") == 1 and "kept 180 of 200 pairs, dropped 20" in stdout and "scored 200 now" in stdout


def test_rerun_scores_only_new_pairs(tiny_clip, filtered, tmp_path):
    out, _ = filtered
    full = pd.read_csv(tiny_clip.data / "train" / "prompts.csv", dtype={"imgId": str})
    data = make_set(tmp_path / "growing", tiny_clip.data / "train", full.head(150))
    view = tmp_path / "growing_view"
    code, stdout, _ = run_filter(data, tiny_clip.weights, view, "--min-score", "0.2")
    assert code == 0 and "scored 150 now, 0 from the cache" in stdout
    make_set(data, tiny_clip.data / "train", full.assign(prompt=full["prompt"].where(full.index != 3, "a new prompt")))
    code, stdout, _ = run_filter(data, tiny_clip.weights, view, "--min-score", "0.2")
    assert code == 0 and "scored 51 now, 149 from the cache" in stdout  # 50 new images, 1 edited prompt
    got, ref = read_scores(view), read_scores(out)
    same = got.index != 3
    np.testing.assert_allclose(got["clip_score"][same], ref["clip_score"][same], atol=1e-5)
    assert sorted(pd.read_csv(view / DROPPED_FILE, dtype=str)["imgId"]) == sorted(got["imgId"][got["clip_score"] < 0.2])


def test_another_model_does_not_reuse_the_scores(tiny_clip, filtered, tmp_path):
    import torch

    from models.clip_towers import load_clip

    out, _ = filtered
    other = tmp_path / "random.pt"
    torch.save(load_clip(TINY_CLIP)[0].state_dict(), other)
    cache = ["--cache", str(out / "clip_scores")]  # the fixture's score cache, shared
    code, stdout, _ = run_filter(tiny_clip.data / "train", other, tmp_path / "v", "--drop-fraction", "0.5", *cache)
    assert code == 0 and "scored 200 now" in stdout
    code, stdout, _ = run_filter(tiny_clip.data / "train", tiny_clip.weights, tmp_path / "w", "--drop-fraction", "0.5",
                                 *cache)
    assert code == 0 and "scored 0 now, 200 from the cache" in stdout


def test_checked_view_input_keeps_its_bad_images_listed(tiny_clip, tmp_path):
    frame = pd.read_csv(tiny_clip.data / "train" / "prompts.csv", dtype={"imgId": str})
    data = make_set(tmp_path / "checked", tiny_clip.data / "train", frame.iloc[1:40])
    pd.DataFrame({"imgId": [frame["imgId"][0]], "path": ["x.png"], "reason": ["truncated"]}).to_csv(
        data / BAD_IMAGES_FILE, index=False)
    assert run_filter(data, tiny_clip.weights, tmp_path / "v", "--drop-fraction", "0.25")[0] == 0
    assert (tmp_path / "v" / BAD_IMAGES_FILE).read_bytes() == (data / BAD_IMAGES_FILE).read_bytes()
    assert len(load_dataset(tmp_path / "v")) == 29


def test_choose_cut():
    scores = np.array([0.3, 0.1, 0.2, 0.1, 0.5], dtype=np.float32)
    drop, cut = choose_cut(scores, ["e", "d", "c", "b", "a"], drop_fraction=0.4)
    assert drop.tolist() == [False, True, False, True, False] and cut == pytest.approx(0.2)
    drop, cut = choose_cut(scores, ["e", "d", "c", "b", "a"], drop_fraction=0.2)
    assert drop.tolist() == [False, False, False, True, False]  # a tie goes by imgId
    drop, cut = choose_cut(scores, list("abcde"), min_score=0.25)
    assert drop.tolist() == [False, True, True, True, False] and cut == 0.25


@pytest.mark.parametrize("case", ["no_data", "unknown_model", "missing_weights", "out_is_data"])
def test_errors_are_one_line(tiny_clip, tmp_path, case):
    data, weights, model, out = tiny_clip.data / "train", tiny_clip.weights, TINY_CLIP, tmp_path / "v"
    needle = {"no_data": "dataset folder not found", "unknown_model": "unknown open_clip model",
              "missing_weights": "checkpoint file not found", "out_is_data": "is the input folder"}[case]
    if case == "no_data":
        data = tmp_path / "nowhere"
    elif case == "unknown_model":
        model = "tiny-ViT-9L-64-p8"
    elif case == "missing_weights":
        weights = tmp_path / "missing.pt"
    else:
        out = data
    code, stdout, stderr = run_filter(data, weights, out, "--drop-fraction", "0.1", model=model)
    assert code == 2 and not stdout
    assert_one_error_line(stderr, needle)


@pytest.mark.parametrize("cut", [["--drop-fraction", "1.0"], ["--min-score", "nan"], [],
                                 ["--min-score", "0.1", "--drop-fraction", "0.1"]])
def test_bad_cut_is_a_usage_error(tiny_clip, tmp_path, cut):
    with pytest.raises(SystemExit) as e:
        run_filter(tiny_clip.data / "train", tiny_clip.weights, tmp_path / "v", *cut)
    assert e.value.code == 2
