"""oof.residuals: the pairwise correlation of models' OOF residuals."""
import numpy as np

from core.metric import l2_normalize
from oof.residuals import residual_correlation


def test_shared_errors_correlate_and_independent_errors_do_not():
    rng = np.random.default_rng(0)
    t = l2_normalize(rng.normal(size=(2000, 384)))
    shared = 0.3 * rng.normal(size=t.shape)
    preds = {
        "a": t + shared + 0.05 * rng.normal(size=t.shape),
        "b": t + shared + 0.05 * rng.normal(size=t.shape),
        "c": t + 0.3 * rng.normal(size=t.shape),
    }
    corr = residual_correlation(preds, t)
    assert list(corr.index) == ["a", "b", "c"]
    assert np.allclose(np.diag(corr.values), 1.0)
    assert corr.loc["a", "b"] > 0.9
    assert abs(corr.loc["a", "c"]) < 0.05 and abs(corr.loc["b", "c"]) < 0.05
    assert np.allclose(corr.values, corr.values.T)


def test_prediction_scale_does_not_change_residuals():
    rng = np.random.default_rng(1)
    t = l2_normalize(rng.normal(size=(300, 384)))
    p = t + 0.5 * rng.normal(size=t.shape)
    q = t + 0.5 * rng.normal(size=t.shape)
    c1 = residual_correlation({"p": p, "q": q}, t)
    c2 = residual_correlation({"p": 7.0 * p, "q": q}, t)
    assert np.allclose(c1.values, c2.values)
