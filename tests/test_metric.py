import numpy as np
import pytest

from core.metric import cosine_scores, l2_normalize, mean_cosine


def test_known_values():
    a = np.array([[1.0, 0, 0], [0, 1.0, 0], [3.0, 4.0, 0]])
    assert mean_cosine(a, a) == pytest.approx(1.0)
    assert mean_cosine(a, -a) == pytest.approx(-1.0)
    orth = np.array([[0, 1.0, 0], [0, 0, 1.0], [-4.0, 3.0, 0]])
    assert mean_cosine(a, orth) == pytest.approx(0.0, abs=1e-7)


def test_unnormalized_inputs_are_normalized():
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(20, 384)), rng.normal(size=(20, 384))
    s = cosine_scores(p * 7.5, t * 0.01)
    ref = (p * t).sum(1) / np.linalg.norm(p, axis=1) / np.linalg.norm(t, axis=1)
    np.testing.assert_allclose(s, ref, atol=1e-5)
    assert mean_cosine(p * 3, t) == pytest.approx(ref.mean(), abs=1e-5)
    np.testing.assert_allclose(np.linalg.norm(l2_normalize(p), axis=1), 1.0, atol=1e-6)


def test_metric_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        cosine_scores(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        cosine_scores(np.array([[np.nan, 1.0]]), np.array([[1.0, 0.0]]))


def test_l2_normalize_is_one_row_normalisation_for_every_input(tmp_path):
    """The project's one row normalisation: chunked over rows (memory-mapped input read a chunk at a time),
    in place with out=x, float16/64 in and float32 out, zero rows kept zero, a row's value independent of
    the rows around it."""
    from core.metric import CHUNK_ROWS

    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2 * CHUNK_ROWS + 5, 384)) * 4).astype(np.float32)
    x[3] = 0
    y = l2_normalize(x)
    assert y.dtype == np.float32 and y.flags.c_contiguous and not np.shares_memory(x, y)
    ref = x / np.maximum(np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True), 1e-12)
    np.testing.assert_allclose(y, ref, atol=1e-6)
    assert not y[3].any()
    for k in (0, CHUNK_ROWS - 1, CHUNK_ROWS, 2 * CHUNK_ROWS + 4):  # rows at chunk edges: as if alone
        assert l2_normalize(x[k:k + 1]).tobytes() == y[k:k + 1].tobytes()
    np.save(tmp_path / "x.npy", x)
    assert l2_normalize(np.load(tmp_path / "x.npy", mmap_mode="r")).tobytes() == y.tobytes()
    inplace = x.copy()
    assert l2_normalize(inplace, out=inplace) is inplace and inplace.tobytes() == y.tobytes()
    out = np.empty((2, 50, 384), dtype=np.float32)
    l2_normalize(x[:100].reshape(2, 50, 384), out=out)
    assert out.reshape(100, 384).tobytes() == y[:100].tobytes()
    assert l2_normalize(x[5]).tobytes() == y[5].tobytes()  # one vector
    half = x.astype(np.float16)
    np.testing.assert_array_equal(l2_normalize(half), l2_normalize(half.astype(np.float32)))
