"""kNN regression on backbone features: predict the similarity-weighted mean of the k nearest
training targets (softmax of cosine / temperature over the k neighbours).

Feature source (config `knn:`):
    features_from: RUN   a trained run's fold checkpoints: fold k's features come from the model
                         trained without fold k (the demo default)
    backbone: {...}      a frozen (pretrained) backbone, the same for every fold (production)
Fold discipline: fold k's rows are predicted from neighbours in the other folds only, with
features of a model that never saw fold k. Features are cached under RUN/features/.
"""
import time

import numpy as np

from core.errors import DataError
from core.io import read_json, save_npy
from core.metric import l2_normalize
from models.fold_outputs import fold_dir, save_fold_outputs


def knn_predict(query, bank, bank_targets, k=20, temperature=0.05, chunk=2048):
    """(predictions (Q, D), neighbour indices into bank (Q, k)) for L2-normalised cosine kNN."""
    q = l2_normalize(query)
    b = l2_normalize(bank)
    k = min(k, len(b))
    preds = np.empty((len(q), bank_targets.shape[1]), dtype=np.float32)
    neighbours = np.empty((len(q), k), dtype=np.int64)
    for s in range(0, len(q), chunk):
        sims = q[s:s + chunk] @ b.T
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, idx, axis=1)
        w = np.exp((top - top.max(axis=1, keepdims=True)) / temperature)
        w /= w.sum(axis=1, keepdims=True)
        preds[s:s + chunk] = np.einsum("qk,qkd->qd", w, bank_targets[idx])
        neighbours[s:s + chunk] = idx
    return preds, neighbours


def knn_fold_predictions(train_features, test_features, targets, folds, fold, k, temperature):
    """OOF predictions for fold `fold` and test predictions, from neighbours in the other folds only."""
    bank_rows = np.flatnonzero(folds != fold)
    val_rows = np.flatnonzero(folds == fold)
    oof, nbr = knn_predict(train_features[val_rows], train_features[bank_rows], targets[bank_rows], k, temperature)
    test, _ = knn_predict(test_features, train_features[bank_rows], targets[bank_rows], k, temperature)
    return oof, test, bank_rows[nbr]


def _feature_models(cfg, data, env):
    """Yield (fold, feature-model checkpoint dict) for each fold."""
    import torch

    from oof.runs import METRICS_FILE

    knn = cfg["knn"]
    if knn["features_from"]:
        from pathlib import Path

        src = Path(knn["features_from"])
        metrics = src / METRICS_FILE
        if not metrics.is_file():
            raise DataError(metrics, "feature run is not finished (train it first)")
        src_folds = read_json(metrics).get("folds", {}).get("sha256")
        if src_folds != data.provenance["folds"]["sha256"]:
            raise DataError(metrics, f"feature run was trained on other folds ({src_folds}) than this run "
                                     f"({data.provenance['folds']['sha256']}): its features would leak")
        for fold in range(data.k):
            path = fold_dir(src, fold) / "model.pt"
            if not path.is_file():
                raise DataError(path, "missing fold checkpoint of the feature run")
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
            yield fold, {"config": ckpt["config"], "state_dict": ckpt["state_dict"]}
    else:
        section = knn["backbone"]
        frozen_cfg = {**cfg, "model": "backbone", "backbone": {**cfg["backbone"], **section}}
        for fold in range(data.k):
            yield fold, {"config": frozen_cfg, "state_dict": None}


def _feature_extractor(spec, device, load_weights=True):
    """(model with .backbone, preprocessing) from a feature spec."""
    from models.engine import build_model_for_inference
    from models.net import build_model

    if spec["state_dict"] is not None:
        return build_model_for_inference(spec["config"], spec["state_dict"], device)
    dim = 384
    model, pre = build_model(spec["config"], np.zeros(dim), np.ones(dim), load_weights=load_weights)
    return model.to(device).eval(), pre


def _features(spec, images, device, batch_size, env, progress, desc):
    from models.engine import feature_forward, predict_rows

    model, pre = _feature_extractor(spec, device)
    return predict_rows(model, images, np.arange(len(images)), pre, batch_size, device,
                        spec["config"]["train"]["precision"], "none", env, progress, desc,
                        forward=feature_forward(model))


def run_knn_folds(cfg, chash, data, run_dir, folds_to_run, env, progress=True):
    from models.image_cache import build_image_cache

    knn, bs = cfg["knn"], cfg["predict"]["batch_size"]
    shared = None  # frozen backbone: one set of features serves every fold
    for fold, spec in _feature_models(cfg, data, env):
        if fold not in folds_to_run:
            continue
        t0 = time.time()
        fcfg = spec["config"]
        size, interp, cache = fcfg["image"]["size"], fcfg["image"]["interpolation"], cfg["data"]["cache_dir"]
        images = build_image_cache(data.train["path"], size, cache, interp, progress=progress and env.is_main)
        test_images = build_image_cache(data.test["path"], size, cache, interp, progress=progress and env.is_main)
        feat_dir = run_dir / "features"
        tag = "frozen" if spec["state_dict"] is None else f"fold{fold}"
        paths = feat_dir / f"{tag}_train.npy", feat_dir / f"{tag}_test.npy"
        if shared is not None and tag == "frozen":
            train_f, test_f = shared
        elif all(p.is_file() for p in paths):
            train_f, test_f = np.load(paths[0]), np.load(paths[1])
        else:
            train_f = _features(spec, images, env.device, bs, env, progress and env.is_main, f"{tag} train features")
            test_f = _features(spec, test_images, env.device, bs, env, progress and env.is_main, f"{tag} test features")
            if env.is_main:
                save_npy(paths[0], train_f)
                save_npy(paths[1], test_f)
        if tag == "frozen":
            shared = (train_f, test_f)
        oof, test, neighbours = knn_fold_predictions(train_f, test_f, data.targets, data.folds, fold, knn["k"],
                                                     knn["temperature"])
        if np.isin(neighbours, np.flatnonzero(data.folds == fold)).any():  # by construction; checked anyway
            raise RuntimeError(f"kNN fold {fold} used neighbours from its own fold")
        if env.is_main:
            bank_rows = np.flatnonzero(data.folds != fold)
            checkpoint = {"config": cfg, "config_hash": chash, "fold": fold, "feature_model": spec,
                          "bank_features": l2_normalize(train_f[bank_rows]).astype(np.float16),
                          "bank_targets": data.targets[bank_rows].astype(np.float32)}
            stats = {"epochs_trained": 0, "train_images_per_sec": None, "seconds": round(time.time() - t0, 2),
                     "n_val": int((data.folds == fold).sum()), "precision": "fp32"}
            log_rows = [[fold, 0, float("nan"), float("nan"), 0.0, stats["seconds"]]]
            score = save_fold_outputs(run_dir, fold, chash, checkpoint, oof, test, log_rows, stats,
                                      data.targets[data.folds == fold])
            print(f"knn fold {fold}: OOF cosine {score:.4f} ({stats['seconds']:.0f} s)")


def predict_knn_fold(ckpt, image_paths, cache_dir, device, batch_size=None, progress=True):
    """Offline inference of one kNN fold checkpoint on new images."""
    from models.image_cache import build_image_cache

    spec, cfg = ckpt["feature_model"], ckpt["config"]
    fcfg = spec["config"]
    images = build_image_cache(image_paths, fcfg["image"]["size"], cache_dir, fcfg["image"]["interpolation"],
                               progress=progress)
    feats = _features(spec, images, device, batch_size or cfg["predict"]["batch_size"], None, progress, "kNN features")
    pred, _ = knn_predict(feats, ckpt["bank_features"].astype(np.float32), ckpt["bank_targets"],
                          cfg["knn"]["k"], cfg["knn"]["temperature"])
    return pred
