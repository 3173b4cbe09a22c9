"""Retrieval with query: clip: the images through an open_clip image tower, the bank's prompts through its text
tower (models/clip_towers.py), the prediction the weighted mean of the top-k prompts' MiniLM embeddings.

    backbone: {source: open_clip, name: ViT-H-14, pretrained: laion2b_s32b_b79k}   # or a local file, or null
    image: {size: 224}
    retrieval: {query: clip, bank: prompts.csv, finetune_steps: 0}

Towers as loaded (finetune_steps: 0): the bank's text features are computed once per (model, bank) and
cached as a float16 memory map (CACHE_DIR/clip_text_features/), copied to RUN/bank/keys.npy for
inference; the image features of the training and test images once per run; the image tower's
weights once, RUN/image_tower.pt. Fine-tuned (finetune_steps > 0): fold k's towers are trained with
open_clip's ClipLoss on the other folds' (image, prompt) pairs (train.lr, train.batch_size), so it
works from random init; its bank keys are RUN/folds/fold<k>/bank_keys.npy and its image tower is in
its fold checkpoint. Inference runs the image tower only: no text tower, no text encoder.
"""
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from core.io import atomic_path
from models.fold_outputs import fold_dir, fold_done
from models.retrieval import bank_index, bank_reference, packed_bank, retrieve, retrieve_fold, save_retrieval_fold
from models.retrieval_bank import BANK_DIR, EMBED_CHUNK, KEYS_FILE, bank_prompts, build_bank

IMAGE_TOWER_FILE = "image_tower.pt"  # RUN/image_tower.pt: the towers-as-loaded image tower, for every fold
FOLD_KEYS_FILE = f"bank_{KEYS_FILE}"  # RUN/folds/fold<k>/bank_keys.npy: a fine-tuned fold's bank keys
_log = logging.getLogger(__name__)


def _towers(cfg, device):
    from models.clip_towers import load_clip

    bb = cfg["backbone"]
    return load_clip(bb["name"], bb["pretrained"], device, cfg["image"]["size"], seed=cfg["seed"])


def towers_identity(cfg, extra=None):
    from models.clip_towers import clip_identity

    bb = cfg["backbone"]
    return clip_identity(bb["name"], bb["pretrained"], cfg["seed"], cfg["image"]["size"], extra)


def _encode(model, pre, paths, cfg, device):
    from models.clip_towers import encode_images
    from models.data import default_workers

    workers = cfg["data"]["workers"] if cfg["data"]["workers"] is not None else default_workers()
    return encode_images(model, pre, paths, cfg["predict"]["batch_size"], device, cfg["train"]["precision"],
                         workers=workers)


def _bank_keys(model, tokenizer, texts, cfg, device, cache_key=None, path=None):
    """float16 text-tower features of the bank: cached by model identity (towers as loaded) or written to `path`."""
    from models.clip_towers import cached_text_features, encode_texts, write_text_features

    def compute(part):
        return encode_texts(model, tokenizer, part, cfg["predict"]["batch_size"], device, cfg["train"]["precision"])

    if cache_key is not None:
        return cached_text_features(cfg["data"]["cache_dir"], cache_key, texts, compute)
    return write_text_features(path, texts, compute, EMBED_CHUNK)


def _finetuned(cfg, data, fold, device):
    """Fold `fold`'s towers: loaded, then trained contrastively on the other folds' pairs."""
    from models.clip_towers import finetune_contrastive
    from models.engine import derived_seed

    model, pre, tokenizer = _towers(cfg, device)
    rows = np.flatnonzero(data.folds != fold)
    model, losses = finetune_contrastive(model, tokenizer, pre, data.train["path"].iloc[rows].tolist(),
                                         data.train["prompt"].iloc[rows].tolist(), cfg["retrieval"]["finetune_steps"],
                                         cfg["train"]["lr"], cfg["train"]["batch_size"],
                                         derived_seed(cfg["seed"], fold), device)
    _log.info("retrieval fold %d: CLIP fine-tune %d steps, loss %.4f -> %.4f", fold, len(losses), losses[0], losses[-1])
    return model, pre, tokenizer


def run_clip_folds(cfg, chash, data, run_dir, folds_to_run, env, progress=True):
    r, device, run_dir = cfg["retrieval"], env.device, Path(run_dir)
    bank = build_bank(cfg, data, run_dir, progress)
    texts = bank_prompts(r["bank"], data.train["prompt"] if r["add_training_prompts"] else None)
    shared = None  # towers as loaded: keys, image features and the image tower once for every fold
    for fold in folds_to_run:
        if fold_done(run_dir, fold, chash):
            continue
        t0 = time.time()
        if r["finetune_steps"]:
            model, pre, tokenizer = _finetuned(cfg, data, fold, device)
            keys = _bank_keys(model, tokenizer, texts, cfg, device, path=fold_dir(run_dir, fold) / FOLD_KEYS_FILE)
            train_f, test_f = (_encode(model, pre, data.train["path"].tolist(), cfg, device),
                               _encode(model, pre, data.test["path"].tolist(), cfg, device))
            index, info = bank_index(keys, r, cfg["seed"])
            tower = {"state_dict": model.visual.state_dict(), "keys": "fold"}
        else:
            shared = shared or _shared_towers(cfg, data, run_dir, texts, device)
            train_f, test_f, index, info, pre = shared
            tower = {"file": IMAGE_TOWER_FILE, "keys": "bank"}
        oof, test, _ = retrieve_fold(index, bank, train_f[data.folds == fold], test_f, fold, r)
        tower.update(name=cfg["backbone"]["name"], image_size=cfg["image"]["size"], pre=pre, seed=cfg["seed"])
        checkpoint = {"config": cfg, "config_hash": chash, "fold": fold, "image_tower": tower,
                      "bank": bank_reference(bank), "index": info}
        save_retrieval_fold(run_dir, fold, chash, checkpoint, oof, test, data, t0, info["kind"])


def _shared_towers(cfg, data, run_dir, texts, device):
    """(train image features, test image features, index, its info, preprocessing) of the towers as loaded;
    RUN/bank/keys.npy and RUN/image_tower.pt written for inference."""
    import torch

    model, pre, tokenizer = _towers(cfg, device)
    keys = _bank_keys(model, tokenizer, texts, cfg, device, cache_key=towers_identity(cfg))
    with atomic_path(run_dir / BANK_DIR / KEYS_FILE) as tmp:
        shutil.copyfile(keys.filename, tmp)  # the cached float16 .npy as it is
    with atomic_path(run_dir / IMAGE_TOWER_FILE) as tmp:
        torch.save(model.visual.state_dict(), tmp)
    train_f = _encode(model, pre, data.train["path"].tolist(), cfg, device)
    test_f = _encode(model, pre, data.test["path"].tolist(), cfg, device)
    index, info = bank_index(keys, cfg["retrieval"], cfg["seed"])
    return train_f, test_f, index, info, pre


def image_tower(ckpt, ckpt_path, device):
    """The fold's image tower (inside an open_clip model whose text tower is never run) and its preprocessing."""
    import torch

    from models.backbones import create_open_clip_model

    t = ckpt["image_tower"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(t["seed"])  # random init, then the saved weights over the image tower
        model = create_open_clip_model(t["name"], None, t["image_size"])
    state = t.get("state_dict")
    if state is None:
        state = torch.load(Path(ckpt_path).resolve().parents[2] / t["file"], map_location="cpu", weights_only=True)
    model.visual.load_state_dict(state)  # fp16 packed tensors copy into the fp32 model
    return model.to(device).eval(), t["pre"]


def predict_clip_fold(ckpt, image_paths, ckpt_path, device, batch_size=None, workers=None, progress=True):
    """One query: clip fold on new images: image tower, then the bank's (precomputed) text keys."""
    from models.clip_towers import encode_images
    from models.data import default_workers
    from models.retrieval import open_index

    cfg, r = ckpt["config"], ckpt["config"]["retrieval"]
    model, pre = image_tower(ckpt, ckpt_path, device)
    feats = encode_images(model, pre, [str(p) for p in image_paths], batch_size or cfg["predict"]["batch_size"],
                          device, cfg["train"]["precision"], progress,
                          default_workers() if workers is None else workers)
    keys_path = (Path(ckpt_path).resolve().parent / FOLD_KEYS_FILE if ckpt["image_tower"]["keys"] == "fold"
                 else packed_bank(ckpt, ckpt_path, KEYS_FILE))
    values = np.load(packed_bank(ckpt, ckpt_path), mmap_mode="r")
    pred, _ = retrieve(open_index(ckpt, keys_path), values, feats, r["k"], r["temperature"])
    return pred
