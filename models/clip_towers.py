"""open_clip models with both towers: load, encode images and texts, cache text features, fine-tune.

The regressors (models/backbones.py) keep only an open_clip model's image tower; retrieval from a
prompt bank, CLIP-score filtering (datagen.filter) and the CLIP-text head initialisation need the
text tower too. Everything here goes through the same resolution of names and weights as the
backbones (`create_open_clip_model`): open_clip names, our JSON configs in configs/open_clip/, a
pretrained tag, a local checkpoint file (Kaggle runs offline) or None (random init, seeded).

    load_clip(name, pretrained)          -> (model, pre, tokenizer)
    clip_identity(name, pretrained)      a stable cache key for the model's outputs
    encode_texts / encode_images         float32, L2-normalised (N, embed_dim)
    cached_text_features(...)            float16 memmap CACHE/clip_text_features/<key>.npy
    finetune_contrastive(...)            a few steps of open_clip's ClipLoss on (image, prompt) pairs

`pre` is the trainer's preprocessing dict (models/net.build_model): mean, std, interpolation, plus
the input size. Images decode through core.images (models.image_cache.decode_resized: the same
pixels as the training cache) in the image sources of models/data.
"""
import logging

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from core.io import sha256_json, sha256_strings
from models.backbones import create_open_clip_model

TEXT_FEATURES_DIR = "clip_text_features"
TEXT_CHUNK = 65_536  # texts encoded per pass, written to the memmap before the next
RANDOM_INIT_SEED = 0
_log = logging.getLogger(__name__)


def load_clip(name, pretrained=None, device="cpu", force_image_size=None, seed=RANDOM_INIT_SEED):
    """(model, pre, tokenizer) of open_clip model `name` with both towers, in eval mode on `device`.

    `pretrained`: an open_clip tag, a local checkpoint file, or None (random init from `seed`, so
    two loads give the same towers and `clip_identity` names them). Unknown names or tags, missing
    files and weights that do not fit raise models.backbones.BackboneError (an InputError)."""
    import open_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_open_clip_model(name, pretrained, force_image_size, device=device)
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg["size"]
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    pre = {"mean": tuple(cfg["mean"]), "std": tuple(cfg["std"]),
           "interpolation": cfg.get("interpolation", "bicubic"), "size": size}
    return model.eval(), pre, open_clip.get_tokenizer(name)


def clip_identity(name, pretrained, seed=RANDOM_INIT_SEED, image_size=None, extra=None):
    """The identity of `load_clip(name, pretrained, ...)`'s outputs: a tag as it is, a local file by its
    sha256 (models.knn_features.weights_identity), a random init by its seed; `extra` (e.g. a fine-tune's
    settings and fold) is hashed in too."""
    from models.knn_features import weights_identity

    weights = weights_identity(pretrained)
    return sha256_json({"source": "open_clip", "name": name, "image_size": image_size, "extra": extra,
                        "weights": weights if weights is not None else {"random_init_seed": seed}})


def _device(device):
    return torch.device(device if device is not None else "cpu")


@torch.no_grad()
def encode_texts(model, tokenizer, texts, batch_size=256, device=None, precision="auto", progress=False):
    """float32 (N, embed_dim) unit rows: `texts` through the text tower (tokenised, truncated to its context)."""
    from models.engine import autocast_for

    device = _device(device)
    ctx, _ = autocast_for(precision, device)
    model.eval()
    texts = [str(t) for t in texts]
    parts = []
    for s in tqdm(range(0, len(texts), batch_size), desc="text features", disable=not progress, unit="batch",
                  leave=False):
        tokens = tokenizer(texts[s:s + batch_size]).to(device)
        with ctx:
            parts.append(model.encode_text(tokens).float())
    if not parts:
        return np.zeros((0, model.visual.output_dim), np.float32)
    return _unit(torch.cat(parts).cpu().numpy())


def _unit(x):
    from core.metric import l2_normalize

    return l2_normalize(np.asarray(x, dtype=np.float32)).astype(np.float32)


class ImageTower(nn.Module):
    """images -> the image tower's projected embedding (what CLIP compares with text features)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.encode_image(x)


def image_source(source_or_paths, pre, workers=0):
    """A models/data image source: as given, a uint8 (N, S, S, 3) array (the cache), or a list of image
    paths decoded and resized to pre["size"] as the batches are read (StreamSource, `workers` processes)."""
    from models.data.sources import ImageSource, StreamSource, as_source

    if isinstance(source_or_paths, (ImageSource, np.ndarray)):
        return as_source(source_or_paths)
    paths = [str(p) for p in source_or_paths]
    return StreamSource(paths, paths, pre["size"], pre["interpolation"], workers)


def encode_images(model, pre, source_or_paths, batch_size=64, device=None, precision="auto", progress=False,
                  workers=0):
    """float32 (N, embed_dim) unit rows: each image through the image tower (see `image_source`)."""
    from models.engine import feature_forward, predict_rows

    source = image_source(source_or_paths, pre, workers)
    try:
        tower = ImageTower(model)
        feats = predict_rows(tower, source, np.arange(len(source)), pre, batch_size, _device(device), precision,
                             "none", None, progress, "image features", forward=feature_forward(tower))
    finally:
        source.close()
    return _unit(feats)


def text_features_key(identity, texts):
    return sha256_json({"text_model": identity, "texts": sha256_strings([str(t) for t in texts])})[:32]


def write_text_features(path, texts, compute, chunk=TEXT_CHUNK):
    """`compute(texts)` written chunk by chunk as a float16 (N, d) .npy at `path` (atomic: a killed build leaves
    no valid-looking file), returned memory-mapped: a bank of millions never sits in memory as float32."""
    from core.io import atomic_path

    out = None
    with atomic_path(path) as tmp:
        for s in range(0, max(len(texts), 1), chunk):
            f = np.asarray(compute(texts[s:s + chunk]), dtype=np.float32)
            if out is None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(texts), f.shape[1]))
            out[s:s + len(f)] = f
        out.flush()
        del out
    return np.load(path, mmap_mode="r")


def cached_text_features(cache_dir, identity, texts, compute, chunk=TEXT_CHUNK):
    """float16 (N, d) memory-mapped unit rows of `texts`, computed once per (model identity, texts).

    CACHE_DIR/clip_text_features/<key>.npy, key = sha256(identity, sha256 of the texts in order).
    `compute(list_of_texts) -> float32 (n, d)` runs chunk by chunk into a temporary memmap renamed
    into place when complete (core.io.atomic_path): a killed build leaves no valid-looking file."""
    from models.knn_features import cached_features

    texts = [str(t) for t in texts]

    def build(path):
        return write_text_features(path, texts, compute, chunk)

    meta = {"identity": identity, "n_texts": len(texts), "texts_sha256": sha256_strings(texts)}
    return cached_features(cache_dir, text_features_key(identity, texts), build, meta, folder=TEXT_FEATURES_DIR)


def contrastive_loss(model, tokens, x, pre, loss_fn=None):
    """open_clip's ClipLoss of a batch: float images x in [0, 1] (B, 3, S, S) and their tokens (B, L)."""
    from open_clip.loss import ClipLoss

    from models.augment import normalize

    img = model.encode_image(normalize(x, pre["mean"], pre["std"]), normalize=True)
    txt = model.encode_text(tokens, normalize=True)
    return (loss_fn or ClipLoss())(img, txt, model.logit_scale.exp())


def finetune_contrastive(model, tokenizer, pre, images, texts, steps, lr=1e-4, batch_size=32, seed=0, device=None,
                         weight_decay=0.1, progress=False):
    """Both towers trained `steps` AdamW steps on (image i, texts[i]) pairs with open_clip's ClipLoss.

    `images`: a source, a uint8 (N, S, S, 3) array or image paths (see `image_source`). Batches are
    drawn from a permutation seeded by (seed, pass); the same call gives the same model. Returns the
    model (in eval mode) and the loss of each step."""
    from models.engine import derived_seed

    device = _device(device)
    source = image_source(images, pre)
    if len(source) != len(texts):
        raise ValueError(f"{len(source)} images for {len(texts)} texts")
    tokens = tokenizer([str(t) for t in texts])
    model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    batch_size = min(batch_size, len(texts))
    per_pass = max(1, len(texts) // batch_size)
    losses = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        try:
            for p in range(-(-steps // per_pass)):
                order = np.random.default_rng(derived_seed(seed, p)).permutation(len(texts))
                batches = [order[b * batch_size:(b + 1) * batch_size] for b in range(per_pass)]
                batches = batches[:steps - len(losses)]
                for rows, x in zip(batches, source.iterate(batches, device)):
                    loss = contrastive_loss(model, tokens[rows].to(device), x, pre)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    losses.append(float(loss.detach()))
                    if progress:
                        _log.info("clip fine-tune step %d/%d: loss %.4f", len(losses), steps, losses[-1])
        finally:
            source.close()
    return model.eval(), losses
