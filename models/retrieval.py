"""Retrieval from a prompt bank: predict the softmax(cosine / temperature)-weighted mean of the MiniLM
embeddings of the k bank prompts nearest to a query (models.knn.neighbour_mean over the bank).

Queries (config `retrieval.query`):
    run    a trained run's predictions (retrieval.run): fold k's OOF rows from its fold-k model (which never
           saw them), the test rows from the same model; the keys are the bank's MiniLM embeddings, so a
           regressor's output is snapped onto the prompts near it. `alpha` mixes the query back in.
    clip   an open_clip model with both towers: images through the image tower, the bank's prompts through
           the text tower (models/retrieval_clip.py)
The bank (models/retrieval_bank.py) is a prompts.csv, optionally plus the training prompts, embedded
once through the text cache; fold k's OOF rows never retrieve a prompt matching a fold-k training
prompt. Search: models/knn_index.py (flat / IVF), one index for every fold, each fold's matches
masked out of its OOF search.

Files: the bank in RUN/bank/ (shared by the folds; inference reads it beside the fold checkpoints),
each fold checkpoint holds the query model (the query run's fold model, or the image tower), the
index's kind, nprobe and IVF cells.
"""
import logging
import time
from pathlib import Path

import numpy as np

from core.errors import DataError
from core.io import read_json
from core.metric import l2_normalize
from core.runs import METRICS_FILE, TEST_FILE, aligned, load_run
from models.fold_outputs import fold_checkpoint, fold_dir, fold_done, save_fold_outputs
from models.knn import neighbour_mean
from models.knn_index import DEFAULT_NPROBE, BankIndex, default_nlist, resolve_kind, train_cells
from models.retrieval_bank import BANK_DIR, VALUES_FILE

_log = logging.getLogger(__name__)
_INDEXES = {}  # inference: (bank file, kind, nprobe, cells) -> BankIndex, built once for every fold


def retrieve(index, values, queries, k, temperature, alpha=0.0, allowed=None):
    """(predictions (Q, 384) float32, bank rows retrieved (Q, k)): the weighted mean of the top-k bank values,
    (1 - alpha) of it mixed with alpha of the query (both unit rows) when alpha > 0."""
    sims, nbr = index.search(queries, k, allowed)
    pred = neighbour_mean(sims, nbr, values, temperature)
    if alpha:
        pred = (1 - alpha) * l2_normalize(pred) + alpha * l2_normalize(queries)
    return pred, nbr


def retrieval_identity(cfg):
    """What the run's hash takes from its inputs beyond the training data: the bank's content and the query run's
    config hash (the retrieval is only as current as they are)."""
    from models.retrieval_bank import file_sha256

    r = cfg["retrieval"]
    bank = Path(r["bank"])
    if not bank.is_file():
        raise DataError(bank, "bank prompts file not found (retrieval.bank: a prompts.csv, e.g. from "
                              "`python -m datagen.prompts`)")
    identity = {"bank": file_sha256(bank)}
    if r["query"] == "clip":  # a local weights file by its content
        from models.retrieval_clip import towers_identity

        identity["towers"] = towers_identity(cfg)
    if r["query"] == "run":
        metrics = Path(r["run"]) / METRICS_FILE
        if not metrics.is_file():
            raise DataError(metrics, "the query run (retrieval.run) is not finished; train it first")
        identity["query_run"] = read_json(metrics)["config_hash"]
    return identity


def query_run_checked(cfg, data):
    """The query run (retrieval.run), finished, trained on these folds, a backbone regressor's predictions."""
    src = Path(cfg["retrieval"]["run"])
    metrics = src / METRICS_FILE
    if not metrics.is_file():
        raise DataError(metrics, "the query run (retrieval.run) is not finished; train it first")
    m = read_json(metrics)
    if m.get("folds", {}).get("sha256") != data.provenance["folds"]["sha256"]:
        raise DataError(metrics, f"query run trained on other folds ({m.get('folds', {}).get('sha256')}) than this "
                                 f"run ({data.provenance['folds']['sha256']}): its OOF rows would leak")
    if m.get("model") != "backbone":
        raise DataError(metrics, f"the query run is a {m.get('model')} run; retrieval.query: run takes a trained "
                                 "backbone run's predictions")
    return src, m


def query_fold_spec(src, fold):
    """What inference needs to predict the query: the query run's fold model (config, weights, its hash and fold)."""
    import torch

    path = fold_checkpoint(src, fold)
    if not path.is_file():
        raise DataError(path, "missing fold checkpoint of the query run")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {"run": Path(src).name, "config": ckpt["config"], "state_dict": ckpt["state_dict"],
            "config_hash": ckpt["config_hash"], "fold": int(ckpt["fold"])}


def run_queries(src, data, fold):
    """(OOF queries of fold `fold` in its row order, that fold model's test predictions in this run's test order)."""
    run = load_run(src, verify_hashes=False)
    ids = np.asarray(data.ids)
    oof = aligned(run, ids[data.folds == fold].tolist())
    path = fold_dir(src, fold) / TEST_FILE
    if not path.is_file():
        raise DataError(path, "missing: the query run's fold test predictions")
    test = np.load(path)
    pos = {i: r for r, i in enumerate(run.test_ids)}
    missing = [i for i in data.test_ids if i not in pos]
    if missing or len(test) != len(run.test_ids):
        raise DataError(path, f"does not hold this run's test images (e.g. {missing[:3]})")
    return oof, test[[pos[i] for i in data.test_ids]]


def bank_index(values, r, seed):
    """The search over the bank's keys and its description for the checkpoints: IVF cells trained once."""
    kind = resolve_kind(r["index"], len(values))
    centroids = None
    if kind == "ivf":
        nlist = r["nlist"] or default_nlist(len(values))
        _log.info("retrieval: IVF search of %d bank rows: training %d cells", len(values), nlist)
        centroids = train_cells(values, nlist, seed)
    info = {"kind": kind, "nprobe": r["nprobe"], "centroids": centroids}
    return BankIndex(values, kind, r["nprobe"], centroids), info


def run_retrieval_folds(cfg, chash, data, run_dir, folds_to_run, env, progress=True):
    """Every fold of a retrieval run (the main process searches; others wait at the trainer's barrier)."""
    from models.retrieval_bank import build_bank

    if not env.is_main:
        return
    r = cfg["retrieval"]
    if r["query"] == "clip":
        from models.retrieval_clip import run_clip_folds

        return run_clip_folds(cfg, chash, data, run_dir, folds_to_run, env, progress)
    src, _ = query_run_checked(cfg, data)
    bank = build_bank(cfg, data, run_dir, progress)
    index, info = bank_index(bank.values, r, cfg["seed"])
    for fold in folds_to_run:
        if fold_done(run_dir, fold, chash):
            continue
        t0 = time.time()
        oof, test, _ = retrieve_fold(index, bank, *run_queries(src, data, fold), fold, r)
        checkpoint = {"config": cfg, "config_hash": chash, "fold": fold, "query": query_fold_spec(src, fold),
                      "bank": bank_reference(bank), "index": info}
        save_retrieval_fold(run_dir, fold, chash, checkpoint, oof, test, data, t0, info["kind"])


def retrieve_fold(index, bank, oof_queries, test_queries, fold, r):
    """(OOF predictions, test predictions, bank rows the OOF rows retrieved) of fold `fold`: its OOF rows search
    the bank without the prompts matching fold `fold`, the test rows the whole bank; `index` searches the bank's
    keys, the predictions average its MiniLM embeddings."""
    oof, nbr = retrieve(index, bank.values, oof_queries, r["k"], r["temperature"], r["alpha"],
                        allowed=~bank.matches[:, fold])
    check_no_fold_match(bank.matches, nbr, fold)
    test, _ = retrieve(index, bank.values, test_queries, r["k"], r["temperature"], r["alpha"])
    return oof, test, nbr


def check_no_fold_match(matches, neighbours, fold):
    """By construction no OOF row of fold k retrieves a prompt matching fold k; checked anyway."""
    if matches[neighbours, fold].any():
        raise RuntimeError(f"retrieval fold {fold} retrieved a bank prompt matching its own fold")


def bank_reference(bank):
    """What a fold checkpoint records of the bank it searches (the files stay in RUN/bank/)."""
    return {"dir": BANK_DIR, "n": bank.n, "texts_sha256": bank.meta["texts_sha256"], "source": bank.meta["source"]}


def save_retrieval_fold(run_dir, fold, chash, checkpoint, oof, test, data, t0, kind):
    stats = {"epochs_trained": 0, "train_images_per_sec": None, "seconds": round(time.time() - t0, 2),
             "n_val": int((data.folds == fold).sum()), "precision": "fp32", "index": kind}
    log_rows = [[fold, 0, float("nan"), float("nan"), 0.0, stats["seconds"]]]
    score = save_fold_outputs(run_dir, fold, chash, checkpoint, oof, test, log_rows, stats,
                              data.targets[data.folds == fold])
    _log.info("retrieval fold %d: OOF cosine %.4f (%.0f s, %s search)", fold, score, stats["seconds"], kind)


# ----------------------------------------------------------------------------- offline inference


def packed_bank(ckpt, ckpt_path, name=VALUES_FILE):
    """A bank file of the run a fold checkpoint belongs to: RUN/folds/fold<k>/model.pt -> RUN/bank/<name>."""
    if ckpt_path is None:
        raise ValueError("a retrieval fold checkpoint needs its path: the bank lies beside its run's folds")
    path = Path(ckpt_path).resolve().parents[2] / ckpt["bank"]["dir"] / name
    if not path.is_file():
        raise DataError(path, "missing: the retrieval run's bank (copy the run folder whole, bank/ included)")
    return path


def open_index(ckpt, keys_path):
    """The bank's search index at inference: built once per process for every fold that shares it."""
    info = ckpt["index"]
    cells = info.get("centroids")
    key = (str(keys_path), info["kind"], info.get("nprobe"), None if cells is None else cells.tobytes())
    if key not in _INDEXES:
        keys = np.load(keys_path, mmap_mode="r")
        _INDEXES.clear()  # one bank at a time: a 5M x 384 IVF index holds 3.7 GiB (bench.bench_retrieval)
        _INDEXES[key] = BankIndex(keys, info["kind"], info.get("nprobe", DEFAULT_NPROBE), cells)
    return _INDEXES[key]


def predict_retrieval_fold(ckpt, image_paths, ckpt_path, device, batch_size=None, tta=None, workers=None,
                           progress=True):
    """One retrieval fold checkpoint on new images: the query, then the bank search. No text encoder runs:
    the bank's embeddings (and a query: clip run's text features) were computed in training."""
    r = ckpt["config"]["retrieval"]
    if r["query"] == "clip":
        from models.retrieval_clip import predict_clip_fold

        return predict_clip_fold(ckpt, image_paths, ckpt_path, device, batch_size, workers, progress)
    from models.predict import predict_fold_models

    q = ckpt["query"]
    query = predict_fold_models([q], image_paths, batch_size, tta, device, workers, progress, names=[q["run"]])[0]
    values_path = packed_bank(ckpt, ckpt_path)
    pred, _ = retrieve(open_index(ckpt, values_path), np.load(values_path, mmap_mode="r"), query, r["k"],
                       r["temperature"], r["alpha"])
    return pred
