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


def _corrcoef_reference(preds, t):
    """The former implementation: every residual stacked in memory, np.corrcoef."""
    from oof.residuals import directional_residual

    return np.corrcoef(np.stack([directional_residual(p, t).ravel() for p in preds.values()]))


def test_chunked_accumulation_equals_corrcoef():
    rng = np.random.default_rng(2)
    t = l2_normalize(rng.normal(size=(257, 384)) + 2.0)  # a shared mean direction, like real embeddings
    shared = rng.normal(size=t.shape)
    preds = {f"m{k}": t + (0.2 + 0.1 * k) * (0.6 * shared + rng.normal(size=t.shape)) + 0.05 * k for k in range(4)}
    ref = _corrcoef_reference(preds, t)
    for chunk in (7, 64, 10_000):  # chunks that do not divide the rows, and one chunk for everything
        corr = residual_correlation(preds, t, chunk_rows=chunk)
        np.testing.assert_allclose(corr.values, ref, atol=1e-6)
        assert list(corr.columns) == list(preds)


def test_run_directories_are_aligned_by_img_id(tmp_path):
    from core.runs import load_run, write_run
    from oof.residuals import run_residual_correlation
    from tests.synthetic import write_synthetic_project

    p = write_synthetic_project(tmp_path, n=300, n_test=5, n_models=3)
    run = load_run(p["runs"][1])  # rewrite one run with its rows shuffled: same predictions per imgId
    perm = np.random.default_rng(0).permutation(300)
    write_run(p["runs"][1], [run.oof_ids[i] for i in perm], run.oof[perm], run.test_ids, run.test,
              run.mean_embedding, run.metrics, [])
    corr = run_residual_correlation(p["runs"], p["targets"])
    ref = _corrcoef_reference({n: p["X"][m] for m, n in enumerate(p["names"])}, p["T"])
    np.testing.assert_allclose(corr.values, ref, atol=1e-6)


def test_targets_of_any_scale_and_a_short_last_chunk():
    """The accumulator normalises the targets itself and reuses its work arrays from chunk to chunk: a short last
    chunk and non-unit targets give the former implementation's numbers."""
    rng = np.random.default_rng(3)
    t = rng.normal(size=(300, 384)) + 1.0
    preds = {f"m{k}": t + (0.5 + 0.2 * k) * rng.normal(size=t.shape) for k in range(3)}
    ref = _corrcoef_reference(preds, t)
    for chunk in (128, 300):
        np.testing.assert_allclose(residual_correlation(preds, 4.0 * t, chunk_rows=chunk).values, ref, atol=1e-6)
