"""kNN regression on backbone features: predict the similarity-weighted mean of the k nearest
training targets (softmax of cosine / temperature over the k neighbours).

Feature source (config `knn:`):
    features_from: RUN   a trained run's fold checkpoints: fold k's features come from the model
                         trained without fold k (the demo default); cached under RUN/features/
    backbone: {...}      a frozen (pretrained) backbone, the same for every fold (production); its
                         features are computed once and cached by identity (models/knn_features.py)
Search (models/knn_index.py): faiss, exact (`knn.index: flat`) or IVF (`ivf`; `auto` picks by bank
size), never an N x N matrix. Fold discipline: fold k's rows are predicted from neighbours in the
other folds only, with features of a model that never saw fold k.
"""
import functools
import logging
import time
from pathlib import Path

import numpy as np

from core.errors import DataError
from core.io import read_json
from core.mapped import take_rows
from models.fold_outputs import fold_checkpoint, save_fold_outputs
from models.knn_features import backbone_identity, cached_features, extract_features, features_key, packed_backbone_path
from models.knn_index import DEFAULT_NPROBE, BankIndex, default_nlist, resolve_kind, train_cells

WEIGHT_CHUNK = 4096  # queries whose (k, 384) neighbour targets are gathered at a time
_log = logging.getLogger(__name__)


def neighbour_mean(sims, neighbours, targets, temperature):
    """Softmax(cosine / temperature)-weighted mean of the neighbours' target rows."""
    out = np.empty((len(sims), targets.shape[1]), dtype=np.float32)
    for s in range(0, len(sims), WEIGHT_CHUNK):
        top = sims[s:s + WEIGHT_CHUNK]
        w = np.exp((top - top.max(axis=1, keepdims=True)) / temperature)
        w /= w.sum(axis=1, keepdims=True)
        # memory-mapped targets (a retrieval bank): the k neighbours lie all over the file, read in small batches
        out[s:s + len(top)] = np.einsum("qk,qkd->qd", w, take_rows(targets, neighbours[s:s + WEIGHT_CHUNK]))
    return out


def knn_predict(query, bank, bank_targets, k=20, temperature=0.05, index=None):
    """(predictions (Q, D), neighbour indices into bank (Q, k)) for cosine kNN; `index`: a BankIndex
    over `bank` (default: exact search of it)."""
    index = index if index is not None else BankIndex(bank)
    sims, neighbours = index.search(query, k)
    return neighbour_mean(sims, neighbours, bank_targets, temperature), neighbours


def knn_fold_predictions(train_features, test_features, targets, folds, fold, k, temperature, index="flat",
                         nprobe=DEFAULT_NPROBE, centroids=None):
    """OOF predictions for fold `fold` and test predictions, from neighbours in the other folds only.

    Returns (oof, test, neighbours of the OOF rows as training row indices)."""
    bank_rows = np.flatnonzero(folds != fold)
    val_rows = np.flatnonzero(folds == fold)
    bank = BankIndex(train_features, resolve_kind(index, len(bank_rows)), nprobe, centroids, rows=bank_rows)
    sims, nbr = bank.search(train_features[val_rows], k)
    nbr = bank_rows[nbr]
    oof = neighbour_mean(sims, nbr, targets, temperature)
    sims, test_nbr = bank.search(test_features, k)
    return oof, neighbour_mean(sims, bank_rows[test_nbr], targets, temperature), nbr


def frozen_backbone_section(cfg):
    """The frozen backbone a kNN config names (`knn.backbone` over the backbone section's defaults), or None."""
    section = cfg["knn"]["backbone"]
    return {**cfg["backbone"], **section} if section else None


def _feature_models(cfg, data):
    """Yield (fold, feature spec) for each fold: {"config", "state_dict"} (+ "identity" when frozen)."""
    import torch

    from core.runs import METRICS_FILE

    knn = cfg["knn"]
    if knn["features_from"]:
        src = Path(knn["features_from"])
        metrics = src / METRICS_FILE
        if not metrics.is_file():
            raise DataError(metrics, "feature run is not finished (train it first)")
        src_folds = read_json(metrics).get("folds", {}).get("sha256")
        if src_folds != data.provenance["folds"]["sha256"]:
            raise DataError(metrics, f"feature run was trained on other folds ({src_folds}) than this run "
                                     f"({data.provenance['folds']['sha256']}): its features would leak")
        for fold in range(data.k):
            path = fold_checkpoint(src, fold)
            if not path.is_file():
                raise DataError(path, "missing fold checkpoint of the feature run")
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
            yield fold, {"config": ckpt["config"], "state_dict": ckpt["state_dict"]}
    else:
        frozen_cfg = {**cfg, "model": "backbone", "backbone": frozen_backbone_section(cfg)}
        spec = {"config": frozen_cfg, "state_dict": None}
        spec["identity"] = backbone_identity(spec)
        for fold in range(data.k):
            yield fold, spec


def feature_model(spec, device, ckpt_path=None):
    """(model with .backbone, preprocessing) from a feature spec: a trained fold model's weights, a
    packed frozen backbone's file (spec "weights_file"), or the backbone's own pretrained weights."""
    import torch

    from models.engine import build_model_for_inference
    from models.net import build_model

    if spec["state_dict"] is not None:  # a trained fold model, or a frozen backbone embedded by an older pack
        return build_model_for_inference(spec["config"], spec["state_dict"], device)
    cfg, packed = spec["config"], spec.get("weights_file")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg["seed"])  # a random-init backbone is the same one in every fold and process
        model, pre = build_model(cfg, np.zeros(384), np.ones(384), load_weights=not packed)
    if packed:
        state = torch.load(packed_backbone_path(packed, ckpt_path), map_location="cpu", weights_only=True)
        model.backbone.load_state_dict(state)  # fp16 packed tensors copy into the fp32 model
    return model.to(device).eval(), pre


def backbone_state(spec, ckpt_path=None):
    """The frozen backbone's weights (state dict), as the kNN features use them."""
    model, _ = feature_model(spec, "cpu", ckpt_path)
    return model.backbone.state_dict()


def _features(spec, fcfg, frame, path_or_key, precision, env, progress, desc, model_fn):
    """Unit float16 features of `frame`'s images: cached by key (frozen backbone) or at a path (fold model).
    `model_fn()`: the feature model and its preprocessing, built on first use."""
    from models.data import choose_source, open_source
    from models.distributed import barrier, broadcast_object

    size = fcfg["image"]["size"]

    def compute(path):
        kind = broadcast_object(choose_source(fcfg["data"]["source"], len(frame), size, fcfg["data"]["cache_dir"])
                                if env.is_main else None, env)
        model, pre = model_fn()
        source = open_source(kind, frame, fcfg, env, progress)
        try:
            return extract_features(model, pre, source, fcfg["predict"]["batch_size"], env.device, precision, env,
                                    progress, desc, path)
        finally:
            source.close()

    if isinstance(path_or_key, Path):
        feats = np.load(path_or_key, mmap_mode="r") if path_or_key.is_file() else compute(path_or_key)
    else:
        feats = cached_features(fcfg["data"]["cache_dir"], path_or_key, compute,
                                {"backbone": spec["identity"], "n": len(frame), "first": frame["path"].tolist()[:3]})
    barrier(env)  # the main process has written the file before any process looks for it again
    return feats


def _fold_features(cfg, spec, fold, data, run_dir, env, progress, keys):
    """(train, test) features for a fold; `keys` memoises a frozen backbone's cache keys across folds."""
    from models.engine import autocast_for

    fcfg = {**spec["config"], "data": cfg["data"], "predict": cfg["predict"]}
    size, interp = fcfg["image"]["size"], fcfg["image"]["interpolation"]
    precision = autocast_for(fcfg["train"]["precision"], env.device)[1]
    model_fn = functools.cache(lambda: feature_model(spec, env.device))  # once for train and test, if needed
    out = []
    for name, frame in (("train", data.train), ("test", data.test)):
        if spec.get("identity"):
            if name not in keys:  # stats every image file: once per run, not per fold
                keys[name] = features_key(spec["identity"], frame["path"].tolist(), size, interp, precision)
            where, desc = keys[name], f"frozen {name} features"
        else:
            where, desc = Path(run_dir) / "features" / f"fold{fold}_{name}.npy", f"fold{fold} {name} features"
        out.append(_features(spec, fcfg, frame, where, precision, env, progress, desc, model_fn))
    return out


def run_knn_folds(cfg, chash, data, run_dir, folds_to_run, env, progress=True):
    knn, show = cfg["knn"], progress and env.is_main
    cells, keys = {}, {}  # IVF cells of a feature set, trained once on all its rows (no targets involved)
    for fold, spec in _feature_models(cfg, data):
        if fold not in folds_to_run:
            continue
        t0 = time.time()
        train_f, test_f = _fold_features(cfg, spec, fold, data, run_dir, env, show, keys)
        if not env.is_main:  # the other processes shared the forward passes; the search is one process's
            continue
        bank_rows = np.flatnonzero(data.folds != fold)
        kind = resolve_kind(knn["index"], len(bank_rows))
        tag = spec.get("identity") or f"fold{fold}"
        if kind == "ivf" and tag not in cells:
            nlist = knn["nlist"] or default_nlist(len(bank_rows))
            _log.info("knn: IVF search of %d bank rows (knn.index %s): training %d cells", len(bank_rows),
                      knn["index"], nlist)
            cells[tag] = train_cells(train_f, nlist, cfg["seed"])
        centroids = cells[tag] if kind == "ivf" else None
        oof, test, neighbours = knn_fold_predictions(train_f, test_f, data.targets, data.folds, fold, knn["k"],
                                                     knn["temperature"], kind, knn["nprobe"], centroids)
        if np.isin(neighbours, np.flatnonzero(data.folds == fold)).any():  # by construction; checked anyway
            raise RuntimeError(f"kNN fold {fold} used neighbours from its own fold")
        checkpoint = {"config": cfg, "config_hash": chash, "fold": fold, "feature_model": spec,
                      "bank_features": np.ascontiguousarray(train_f[bank_rows], dtype=np.float16),
                      "bank_targets": data.targets[bank_rows].astype(np.float32),
                      "knn_index": {"kind": kind, "nprobe": knn["nprobe"], "centroids": centroids}}
        stats = {"epochs_trained": 0, "train_images_per_sec": None, "seconds": round(time.time() - t0, 2),
                 "n_val": int((data.folds == fold).sum()), "precision": "fp32", "knn_index": kind}
        log_rows = [[fold, 0, float("nan"), float("nan"), 0.0, stats["seconds"]]]
        score = save_fold_outputs(run_dir, fold, chash, checkpoint, oof, test, log_rows, stats,
                                  data.targets[data.folds == fold])
        _log.info("knn fold %d: OOF cosine %.4f (%.0f s, %s search)", fold, score, stats["seconds"], kind)


def predict_knn_fold(ckpt, image_paths, cache_dir, device, batch_size=None, progress=True, ckpt_path=None,
                     workers=None):
    """Offline inference of one kNN fold checkpoint on new images.

    A frozen backbone's features of these images are computed once: later folds (and runs) on the
    same backbone read them from this process's memo or CACHE_DIR/knn_features/. `ckpt_path`
    locates a packed backbone beside the pack's runs."""
    import torch

    from models.data import StreamSource, default_workers
    from models.engine import autocast_for

    spec, cfg = ckpt["feature_model"], ckpt["config"]
    fcfg, device = spec["config"], torch.device(device)
    size, interp = fcfg["image"]["size"], fcfg["image"]["interpolation"]
    precision = autocast_for(fcfg["train"]["precision"], device)[1]
    image_paths = [str(p) for p in image_paths]

    def compute(path):
        model, pre = feature_model(spec, device, ckpt_path)
        source = StreamSource(image_paths, [Path(p).stem for p in image_paths], size, interp,
                              default_workers() if workers is None else workers)
        try:
            return extract_features(model, pre, source, batch_size or cfg["predict"]["batch_size"], device, precision,
                                    None, progress, "kNN features", path)
        finally:
            source.close()

    identity = backbone_identity(spec)
    if identity:
        feats = cached_features(cache_dir, features_key(identity, image_paths, size, interp, precision), compute,
                                {"backbone": identity, "n": len(image_paths), "first": image_paths[:3]})
    else:
        feats = compute(None)
    info = ckpt.get("knn_index") or {"kind": "flat"}  # checkpoints before knn.index: exact
    index = BankIndex(ckpt["bank_features"], info["kind"], info.get("nprobe", DEFAULT_NPROBE), info.get("centroids"))
    pred, _ = knn_predict(feats, None, ckpt["bank_targets"], cfg["knn"]["k"], cfg["knn"]["temperature"], index)
    return pred
