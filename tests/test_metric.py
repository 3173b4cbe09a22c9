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
