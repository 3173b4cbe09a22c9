"""The project's target and submission code reproduce Kaggle's sample_submission.csv."""
import numpy as np
import pandas as pd
import pytest

from core.dataset import read_prompts
from core.errors import DataError
from core.submission import format_submission, read_submission, write_submission
from core.targets import compute_targets, load_targets


@pytest.fixture(scope="module")
def sample_targets(kaggle_sample, tmp_path_factory):
    frame = read_prompts(kaggle_sample / "prompts.csv")
    out = tmp_path_factory.mktemp("targets")
    emb, reused = compute_targets(frame["imgId"], frame["prompt"], out)
    assert not reused
    return frame, emb, out


def test_targets_equal_sample_submission(kaggle_sample, sample_targets):
    frame, emb, _ = sample_targets
    ids, expected = read_submission(kaggle_sample / "sample_submission.csv")
    assert ids == frame["imgId"].tolist()
    assert emb.shape == (7, 384) and emb.dtype == np.float32
    assert np.abs(emb - expected).max() <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_targets_cache_keyed_by_prompts_and_embedder(sample_targets, tmp_path):
    frame, emb, out = sample_targets
    again, reused = compute_targets(frame["imgId"], frame["prompt"], out)
    assert reused and np.array_equal(again, emb)
    changed = frame["prompt"].tolist()
    changed[0] = changed[0] + " at dawn"
    emb2, reused2 = compute_targets(frame["imgId"], changed, out)
    assert not reused2 and not np.allclose(emb2[0], emb[0]) and np.allclose(emb2[1:], emb[1:], atol=1e-6)
    # Another embedder folder (a copy with one file changed) has another fingerprint -> recomputed.
    import shutil

    from core.targets import default_embedder_path

    other = tmp_path / "embedder"
    shutil.copytree(default_embedder_path(), other)
    (other / "README.md").write_text("a different model card\n")
    _, reused3 = compute_targets(frame["imgId"], changed, out, embedder=other)
    assert not reused3
    ids, loaded = load_targets(out)
    assert ids == frame["imgId"].tolist()


def test_writer_reproduces_sample_submission(kaggle_sample, sample_targets, tmp_path):
    frame, emb, _ = sample_targets
    path = write_submission(tmp_path / "submission.csv", frame["imgId"], emb)
    ours = pd.read_csv(path)
    theirs = pd.read_csv(kaggle_sample / "sample_submission.csv")
    assert list(ours.columns) == ["imgId_eId", "val"]
    assert ours["imgId_eId"].tolist() == theirs["imgId_eId"].tolist()
    assert np.abs(ours["val"].to_numpy() - theirs["val"].to_numpy()).max() <= 1e-5


def test_writer_roundtrips_float32_and_keeps_order(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 384)).astype(np.float32) * np.logspace(-8, 0, 384, dtype=np.float32)
    ids = [f"id{i:03d}" for i in rng.permutation(50)]
    write_submission(tmp_path / "s.csv", ids, emb)
    back_ids, back = read_submission(tmp_path / "s.csv")
    assert back_ids == ids
    assert np.array_equal(back, emb)  # bit-exact float32 round trip
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert (lines[0] == "imgId_eId,val" and lines[1].startswith(f"{ids[0]}_0,")
            and lines[384].startswith(f"{ids[0]}_383,"))


def test_writer_rejects_nan_and_bad_shapes():
    with pytest.raises(ValueError, match="NaN"):
        format_submission(["a"], np.full((1, 384), np.nan))
    with pytest.raises(ValueError, match="shape"):
        format_submission(["a", "b"], np.zeros((1, 384)))
    with pytest.raises(ValueError, match="duplicate"):
        format_submission(["a", "a"], np.zeros((2, 384)))


def test_read_submission_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("imgId_eId,val\nabc_0,0.1\n")
    with pytest.raises(DataError, match="bad.csv.*384 rows per image"):
        read_submission(bad)
    with pytest.raises(DataError, match="not found"):
        read_submission(tmp_path / "nope.csv")
