"""kNN at scale: faiss search vs a brute-force numpy reference, IVF, and the frozen-backbone feature cache."""
import numpy as np
import pytest
import torch

from core.dataset import load_dataset
from models import knn, knn_features, knn_index
from models.config import ConfigError, config_hash, load_config
from models.train import train_run
from tests.model_fixtures import REPO, frozen_backbone_overrides, make_tiny_project, tiny_overrides
from tests.synthetic import clustered_unit_vectors, mixture


def reference_knn(query, bank, targets, k, temperature):
    """Today's kNN before faiss: dense numpy cosines, argpartition, softmax weights."""
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    sims = q @ b.T
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(sims, idx, axis=1)
    w = np.exp((top - top.max(axis=1, keepdims=True)) / temperature)
    w /= w.sum(axis=1, keepdims=True)
    return np.einsum("qk,qkd->qd", w, targets[idx]), idx


def test_faiss_knn_matches_the_numpy_reference(monkeypatch):
    monkeypatch.setattr(knn_index, "BANK_CHUNK", 700)  # several bank chunks merged, several query chunks
    monkeypatch.setattr(knn_index, "QUERY_CHUNK", 64)
    rng = np.random.default_rng(0)
    bank, query = rng.normal(size=(2000, 48)).astype(np.float32), rng.normal(size=(150, 48)).astype(np.float32)
    targets = rng.normal(size=(2000, 384)).astype(np.float32)
    ref, ref_idx = reference_knn(query, bank, targets, 20, 0.05)
    pred, idx = knn.knn_predict(query, bank, targets, k=20, temperature=0.05)
    assert np.array_equal(np.sort(idx, axis=1), np.sort(ref_idx, axis=1))
    np.testing.assert_allclose(pred, ref, atol=1e-4)
    # the float16 bank the checkpoints and the feature cache hold: the same up to fp16 noise
    unit16 = (bank / np.linalg.norm(bank, axis=1, keepdims=True)).astype(np.float16)
    pred16, idx16 = knn.knn_predict(query, unit16, targets, k=20, temperature=0.05)
    assert np.mean([len(np.intersect1d(a, b)) for a, b in zip(idx16, ref_idx)]) > 19.9
    cos = np.sum(pred16 * ref, axis=1) / np.linalg.norm(pred16, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.999


def test_fold_predictions_match_the_reference_and_skip_the_own_fold():
    rng = np.random.default_rng(1)
    n, folds = 900, np.arange(900) % 3
    feats, test = rng.normal(size=(n, 32)).astype(np.float32), rng.normal(size=(40, 32)).astype(np.float32)
    targets = rng.normal(size=(n, 384)).astype(np.float32)
    twins = feats.copy()
    twins[np.arange(0, n, 6) + 3] = twins[np.arange(0, n, 6)]  # twins in the own fold: a leak would find them
    for fold in range(3):
        _, _, nbr = knn.knn_fold_predictions(twins, test, targets, folds, fold, 10, 0.05)
        assert not np.isin(nbr, np.flatnonzero(folds == fold)).any()
        bank = np.flatnonzero(folds != fold)
        oof, tst, nbr = knn.knn_fold_predictions(feats, test, targets, folds, fold, 10, 0.05)
        ref_oof, ref_idx = reference_knn(feats[folds == fold], feats[bank], targets[bank], 10, 0.05)
        ref_test, _ = reference_knn(test, feats[bank], targets[bank], 10, 0.05)
        np.testing.assert_allclose(oof, ref_oof, atol=1e-4)
        np.testing.assert_allclose(tst, ref_test, atol=1e-4)
        assert np.array_equal(np.sort(nbr, axis=1), np.sort(bank[ref_idx], axis=1))
        if fold:
            continue
        # IVF probing every cell is the exact search on float16 codes; probing one never leaves the other folds
        centroids = knn_index.train_cells(feats, 12)
        oof_ivf, _, nbr_ivf = knn.knn_fold_predictions(feats, test, targets, folds, fold, 10, 0.05, "ivf", 12,
                                                       centroids)
        assert np.mean([len(np.intersect1d(a, b)) for a, b in zip(nbr_ivf, bank[ref_idx])]) > 9.9
        cos = np.sum(oof_ivf * ref_oof, axis=1) / np.linalg.norm(oof_ivf, axis=1) / np.linalg.norm(ref_oof, axis=1)
        assert np.median(cos) > 1 - 1e-5 and cos.min() > 0.95
        one_cell = knn.knn_fold_predictions(feats, test, targets, folds, fold, 10, 0.05, "ivf", 1, centroids)
        assert not np.isin(one_cell[2], np.flatnonzero(folds == fold)).any() and np.isfinite(one_cell[0]).all()


def test_ivf_recall_on_clustered_vectors(tmp_path):
    d, n = 64, 40_000
    centres = mixture(200, d, seed=0)
    clustered_unit_vectors(tmp_path / "bank.npy", n, d, centres, seed=1)
    clustered_unit_vectors(tmp_path / "q.npy", 500, d, centres, seed=2)
    bank, q = np.load(tmp_path / "bank.npy", mmap_mode="r"), np.load(tmp_path / "q.npy")
    _, exact = knn_index.BankIndex(bank, "flat").search(q, 20)
    index = knn_index.BankIndex(bank, "ivf", nprobe=16)
    assert len(index.centroids) == knn_index.default_nlist(n) == 200
    _, approx = index.search(q, 20)
    recall = np.mean([len(np.intersect1d(a, b)) / 20 for a, b in zip(approx, exact)])
    assert recall >= 0.95, recall
    assert knn_index.resolve_kind("auto", knn_index.FLAT_MAX_ROWS) == "flat"
    assert knn_index.resolve_kind("auto", knn_index.FLAT_MAX_ROWS + 1) == "ivf"


def test_knn_config_keys(tmp_path):
    base = load_config(REPO / "configs/knn_demo.yaml")
    assert base["knn"]["index"] == "auto"
    assert config_hash(base) == config_hash(load_config(REPO / "configs/knn_demo.yaml", ["knn.index=auto"]))
    assert config_hash(base) != config_hash(load_config(REPO / "configs/knn_demo.yaml", ["knn.index=ivf"]))
    for bad in ("knn.index=hnsw", "knn.nprobe=0", "knn.nlist=1.5"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(REPO / "configs/knn_demo.yaml", [bad])


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    """A kNN run (2 folds) on a frozen convnext_atto whose "pretrained" weights are a local file."""
    root = make_tiny_project(tmp_path_factory.mktemp("knn"))
    return root, frozen_backbone_overrides(root)[1]


def _count(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **kw: calls.append(1) or real(*a, **kw))
    return calls


def test_frozen_features_are_computed_once_and_shared(frozen_run, monkeypatch):
    root, frozen = frozen_run
    knn_features._MEMO.clear()
    calls = _count(monkeypatch, knn, "feature_model")
    cfg = load_config(REPO / "configs/knn_demo.yaml", tiny_overrides(root, root / "runs" / "a", extra=frozen))
    train_run(cfg, progress=False)
    assert len(calls) == 1  # the frozen model built once; train and test features once, for both folds
    cached = sorted((root / "cache" / knn_features.FEATURES_DIR).glob("*.npy"))
    assert len(cached) == 2 and {np.load(p, mmap_mode="r").dtype for p in cached} == {np.dtype(np.float16)}
    train = np.load(cached[0]).astype(np.float32)
    np.testing.assert_allclose(np.linalg.norm(train, axis=1), 1, atol=2e-3)
    ckpt = torch.load(root / "runs" / "a" / "folds" / "fold1" / "model.pt", weights_only=False)
    assert ckpt["knn_index"]["kind"] == "flat" and ckpt["bank_features"].dtype == np.float16
    assert ckpt["feature_model"]["state_dict"] is None and ckpt["feature_model"]["identity"]
    # another run on the same backbone and images (other k), in a fresh process: features from disk
    knn_features._MEMO.clear()
    cfg = load_config(REPO / "configs/knn_demo.yaml",
                      tiny_overrides(root, root / "runs" / "b", extra=frozen + ["knn.k=5"]))
    train_run(cfg, progress=False)
    assert len(calls) == 1  # no new build: the features come from disk


def test_inference_computes_a_frozen_backbones_features_once(frozen_run, monkeypatch, tmp_path):
    from models.predict import predict_images

    root, frozen = frozen_run
    run = root / "runs" / "a"
    if not (run / "metrics.json").is_file():
        cfg = load_config(REPO / "configs/knn_demo.yaml", tiny_overrides(root, run, extra=frozen))
        train_run(cfg, progress=False)
    paths = load_dataset(root / "data" / "test")["path"].tolist()  # the run's test rows, in order
    knn_features._MEMO.clear()
    calls = _count(monkeypatch, knn, "feature_model")
    pred = predict_images(run, paths, progress=False, workers=0)
    assert len(calls) == 1  # two fold checkpoints, one backbone: one feature pass
    # a new process (no memo) with the same cache folder reads the file; the result is the same
    knn_features._MEMO.clear()
    ckpts = [torch.load(p, weights_only=False) for p in sorted(run.glob("folds/fold*/model.pt"))]
    first = knn.predict_knn_fold(ckpts[0], paths, tmp_path, "cpu", progress=False, workers=0)
    knn_features._MEMO.clear()
    again = knn.predict_knn_fold(ckpts[0], paths, tmp_path, "cpu", progress=False, workers=0)
    assert len(calls) == 2 and len(list((tmp_path / knn_features.FEATURES_DIR).glob("*.npy"))) == 1
    np.testing.assert_array_equal(first, again)
    second = knn.predict_knn_fold(ckpts[1], paths, tmp_path, "cpu", progress=False, workers=0)
    assert len(calls) == 2
    unit = [p / np.linalg.norm(p, axis=1, keepdims=True) for p in (first, second)]
    mean = (unit[0] + unit[1]) / 2
    np.testing.assert_allclose(pred, mean, atol=1e-5)
    # the run's own test predictions came from the same features and banks
    test = np.load(run / "folds" / "fold0" / "test.npy")
    cos = np.sum(first * test, axis=1) / np.linalg.norm(first, axis=1) / np.linalg.norm(test, axis=1)
    assert cos.min() > 1 - 1e-4


def test_ivf_run_stores_its_cells_and_inference_probes_them(frozen_run, tmp_path):
    root, frozen = frozen_run
    run = root / "runs" / "ivf"
    cfg = load_config(REPO / "configs/knn_demo.yaml",
                      tiny_overrides(root, run, extra=frozen + ["knn.index=ivf", "knn.nprobe=1", "knn.k=5"]))
    train_run(cfg, progress=False)
    paths = load_dataset(root / "data" / "test")["path"].tolist()
    for fold in (0, 1):
        ckpt = torch.load(run / "folds" / f"fold{fold}" / "model.pt", weights_only=False)
        info = ckpt["knn_index"]
        assert info["kind"] == "ivf" and info["nprobe"] == 1
        assert info["centroids"].shape == (knn_index.default_nlist(len(ckpt["bank_features"])), 320)
        pred = knn.predict_knn_fold(ckpt, paths, tmp_path, "cpu", progress=False, workers=0)
        np.testing.assert_allclose(pred, np.load(run / "folds" / f"fold{fold}" / "test.npy"), atol=2e-3)
