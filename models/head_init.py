"""`head.init: clip_text`: a linear head that starts where CLIP already is.

A pretrained CLIP image tower puts an image's embedding near the text embedding of its caption. So
the least-squares map from a prompt bank's CLIP-text features (unit rows, from the text tower of the
backbone's own open_clip model) to the prompts' MiniLM embeddings, applied to the unit image
embedding, predicts far better than the mean embedding before any training step. The head is
`UnitInputLinear` (the image embedding L2-normalised, as CLIP compares it, then Linear) and starts
with that map, written in the loss's output space:

    cosine        head(x) = A^T x + c                        (the embedding)
    residual_mse  head(x) = (A^T x + c - mean) / std          (the standardised residual)

The fit (A, c) depends on the bank, the text tower and the MiniLM model only, so it is computed
once and cached (CACHE_DIR/clip_head_init/<key>.npy: rows 0..d-1 = A, row d = c), as are the bank's
CLIP-text features (models.clip_towers.cached_text_features) and MiniLM rows (the text cache).
"""
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import DataError
from core.io import save_npy, sha256_json

HEAD_INIT_DIR = "clip_head_init"
TEXT_CACHE_DIR = "text_embeddings"  # MiniLM rows by text, under data.cache_dir (core.targets.DEFAULT_TEXT_CACHE)
# The ridge, relative to the mean variance of the text features (head.init_ridge). The map is fitted on text
# features and applied to image features, which differ from their captions' (CLIP's modality gap): a small
# ridge lets it amplify those differences. Tiny open_clip, 64-d, 200-prompt bank (docs/training.md):
# ridge 1e-4 started at cosine 0.17 (mean embedding 0.52), 0.1 at 0.58, 1 at 0.58.
RIDGE = 0.1
FIT_CHUNK = 65_536
_log = logging.getLogger(__name__)


class UnitInputLinear(nn.Linear):
    """Linear on the L2-normalised input (a CLIP image embedding, compared with text features as a unit vector)."""

    def forward(self, x):
        return F.linear(F.normalize(x.float(), dim=-1).to(self.weight.dtype), self.weight, self.bias)


def fit_linear_map(x, y, ridge=RIDGE, chunk=FIT_CHUNK):
    """(A (d, k), c (k,)) minimising |x A + c - y|^2 / n + lam |A|^2, lam = ridge x mean diagonal of cov(x).

    Normal equations accumulated in float64 over chunks of rows, so a bank of millions of (memory-
    mapped float16) rows is never in memory as float64."""
    n = len(x)
    if n < 2 or len(y) != n:
        raise ValueError(f"need >= 2 matching rows, got {len(x)} features and {len(y)} targets")
    d, k = x.shape[1], y.shape[1]
    sx, sy = np.zeros(d), np.zeros(k)
    sxx, sxy = np.zeros((d, d)), np.zeros((d, k))
    for s in range(0, n, chunk):
        xs = np.asarray(x[s:s + chunk], dtype=np.float64)
        ys = np.asarray(y[s:s + chunk], dtype=np.float64)
        sx += xs.sum(0)
        sy += ys.sum(0)
        sxx += xs.T @ xs
        sxy += xs.T @ ys
    mx, my = sx / n, sy / n
    cov = sxx / n - np.outer(mx, mx)
    cross = sxy / n - np.outer(mx, my)
    lam = ridge * max(float(np.trace(cov)) / d, 1e-12)
    a = np.linalg.solve(cov + lam * np.eye(d), cross)
    return a.astype(np.float32), (my - mx @ a).astype(np.float32)


def read_bank(path):
    """The bank's prompts: a prompts.csv (imgId,prompt[,...]: python -m datagen.prompts) or a folder holding one."""
    from core.dataset import PROMPTS_FILE, read_prompts

    path = Path(path)
    return read_prompts(path / PROMPTS_FILE if path.is_dir() else path)["prompt"].astype(str).tolist()


def bank_identity(path):
    """The bank file's content (sha256): a run initialised from another bank has another config hash."""
    from core.dataset import PROMPTS_FILE
    from models.knn_features import weights_identity

    path = Path(path)
    path = path / PROMPTS_FILE if path.is_dir() else path
    if not path.is_file():
        raise DataError(path, "prompt bank (head.init_bank) not found; build one with `python -m datagen.prompts`")
    return weights_identity(path)


def clip_text_map(backbone, bank, cache_dir, ridge=RIDGE, embedder=None, progress=False, device="cpu"):
    """(A, c): the bank's unit CLIP-text features (the text tower of `backbone`, an open_clip section) -> their
    MiniLM embeddings, fitted once per (text tower, bank, embedder) and cached under `cache_dir`."""
    from core.targets import default_embedder_path, embed_prompts_cached, embedder_fingerprint
    from models.clip_towers import cached_text_features, clip_identity, encode_texts, load_clip

    name, pretrained = backbone["name"], backbone.get("pretrained")
    prompts = read_bank(bank)
    text_id = clip_identity(name, pretrained)
    embedder = str(embedder or default_embedder_path())
    key = sha256_json({"text_tower": text_id, "bank": bank_identity(bank), "embedder": embedder_fingerprint(embedder),
                       "ridge": ridge})[:32]
    path = Path(cache_dir) / HEAD_INIT_DIR / f"{key}.npy"
    if path.is_file():
        fitted = np.load(path)
        return fitted[:-1], fitted[-1]
    clip = {}

    def text_features(texts):
        if not clip:
            clip["model"], _, clip["tokenizer"] = load_clip(name, pretrained, device=device)
        return encode_texts(clip["model"], clip["tokenizer"], texts, device=device, progress=progress)

    feats = cached_text_features(cache_dir, text_id, prompts, text_features)
    minilm, _ = embed_prompts_cached(prompts, Path(cache_dir) / TEXT_CACHE_DIR, embedder, progress=progress)
    a, c = fit_linear_map(feats, minilm, ridge)
    save_npy(path, np.vstack([a, c[None]]))
    _log.info("head.init clip_text: fitted the map from %d bank prompts (%s)", len(prompts), path)
    return a, c


def init_head_weights(linear, a, c, loss_type, target_mean, target_std):
    """Set `linear` (out = W x + b) to the map x -> x A + c, in the loss's output space (see the module doc)."""
    w, b = torch.as_tensor(a.T, dtype=torch.float32), torch.as_tensor(c, dtype=torch.float32)
    if loss_type == "residual_mse":
        mean = torch.as_tensor(np.asarray(target_mean), dtype=torch.float32)
        std = torch.as_tensor(np.asarray(target_std), dtype=torch.float32)
        w, b = w / std[:, None], (b - mean) / std
    if tuple(linear.weight.shape) != tuple(w.shape):
        raise ValueError(f"head {tuple(linear.weight.shape)} cannot take the map {tuple(w.shape)}")
    with torch.no_grad():
        linear.weight.copy_(w)
        linear.bias.copy_(b)
