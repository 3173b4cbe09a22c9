"""Backbone features for the kNN model: unit float16 rows in memory-mapped .npy files, computed once
per (backbone, image set) and shared by every fold, every run and, at inference, every fold checkpoint.

    CACHE_DIR/knn_features/<key>.npy    float16 (N, F), row i = image i, L2-normalised
    CACHE_DIR/knn_features/<key>.json   what it holds

key = sha256 of the backbone's identity, the images' identity (models.image_cache.cache_key:
each file's path, byte size and mtime, the image size and interpolation) and the resolved
precision. The backbone's identity (`backbone_identity`, stored in the kNN fold checkpoint):
source, name, kwargs, weights (the pretrained tag, the sha256 of a local weights file, or the
seed of a random init) and preprocessing (size, mean, std, interpolation). A trained fold model
(knn.features_from) is its own backbone: no identity, its features stay in RUN/features/.
Features are written chunk by chunk, so a 2M x 1024 set never sits in memory as float32.
Unit rows in float16 change cosines by ~1e-5 (rounding of 1/sqrt(d)-sized components).
"""
import os
from collections import OrderedDict
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from core.errors import DataError
from core.io import atomic_path, sha256_file, sha256_json, write_json
from core.metric import l2_normalize

FEATURES_DIR = "knn_features"
FEATURE_CHUNK = 32_768  # rows predicted per pass, written to the memmap before the next
# A pack (pipeline/kaggle/pack.py) stores each frozen backbone once, as PACK/backbones/<file>; fold
# checkpoints name the file. Found beside the pack's runs (PACK/runs/<run>/folds/fold<k>/model.pt)
# or in the folders BACKBONES_ENV lists (the Kaggle notebook sets it).
PACKED_BACKBONES_DIR = "backbones"
BACKBONES_ENV = "SDI2P_BACKBONES"
MEMO_SIZE = 4  # feature sets kept in this process (16k test images x 1024 in float16: 32 MB each)
_MEMO = OrderedDict()
_FILE_SHA = {}


def weights_identity(pretrained):
    """A pretrained tag as it is; a local weights file by its content (sha256, memoised per path/size/mtime)."""
    if pretrained is None or pretrained is False:
        return None
    path = Path(str(pretrained))
    if not path.is_file():
        return str(pretrained)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_SHA:
        _FILE_SHA[key] = sha256_file(path)
    return "sha256:" + _FILE_SHA[key]


def backbone_identity(spec):
    """The identity of a frozen feature backbone (see the module doc); None for a trained fold model."""
    if spec.get("identity"):
        return spec["identity"]
    if spec.get("state_dict") is not None:
        return None
    cfg = spec["config"]
    bb, image = cfg["backbone"], cfg["image"]
    weights = weights_identity(bb.get("pretrained"))
    return sha256_json({"source": bb["source"], "name": bb["name"], "kwargs": bb.get("kwargs") or {},
                        "weights": weights if weights is not None else {"random_init_seed": cfg["seed"]},
                        "image": {k: image[k] for k in ("size", "mean", "std", "interpolation")}})


def features_key(identity, paths, size, interpolation, precision):
    from models.image_cache import cache_key

    return sha256_json({"backbone": identity, "images": cache_key(paths, size, interpolation),
                        "precision": precision})[:32]


def packed_backbone_path(name, ckpt_path=None):
    """The packed backbone weights file `name`: beside the pack's runs, else in the BACKBONES_ENV folders."""
    # ckpt_path: PACK/runs/<run>/folds/fold<k>/model.pt -> PACK/backbones
    where = [Path(ckpt_path).resolve().parents[4] / PACKED_BACKBONES_DIR] if ckpt_path else []
    where += [Path(d) for d in os.environ.get(BACKBONES_ENV, "").split(os.pathsep) if d]
    for folder in where:
        if (folder / name).is_file():
            return folder / name
    raise DataError(name, f"packed frozen backbone not found (looked in {[str(w) for w in where]}); set "
                          f"{BACKBONES_ENV} to the pack's {PACKED_BACKBONES_DIR}/ folder")


def extract_features(model, pre, source, batch_size, device, precision, env=None, progress=False, desc="features",
                     path=None):
    """Unit float16 backbone features of every image of `source`, in chunks of FEATURE_CHUNK rows.

    With `path` the main process writes them to that .npy (atomically) and returns it memory-mapped;
    other processes (env) share the forward passes and return None."""
    from models.engine import feature_forward, predict_rows

    main = env is None or env.is_main
    n, parts, out = len(source), [], None
    with atomic_path(path) if (path and main) else nullcontext() as tmp:
        for s in range(0, n, FEATURE_CHUNK):
            rows = np.arange(s, min(n, s + FEATURE_CHUNK))
            f = predict_rows(model, source, rows, pre, batch_size, device, precision, "none", env, progress,
                             f"{desc} {s // FEATURE_CHUNK + 1}/{-(-n // FEATURE_CHUNK)}",
                             forward=feature_forward(model))
            if not main:  # the main process gathered this chunk's features; others only shared the passes
                continue
            f = l2_normalize(f).astype(np.float16)
            if tmp is None:
                parts.append(f)
                continue
            if out is None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, f.shape[1]))
            out[s:s + len(f)] = f
        if tmp is not None:
            if out is None:  # no images
                np.save(tmp, np.zeros((0, 0), dtype=np.float16))
            else:
                out.flush()
                del out
    if path and main:
        return np.load(path, mmap_mode="r")
    if not main:
        return None
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float16)


def cached_features(cache_dir, key, compute, meta=None, folder=FEATURES_DIR):
    """Features under `key`: from this process's memo, else CACHE_DIR/<folder>/<key>.npy, else
    `compute(path)` (which writes that file and returns the array, or None off the main process)."""
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    path = Path(cache_dir) / folder / f"{key}.npy"
    if path.is_file():
        feats = np.load(path, mmap_mode="r")
    else:
        feats = compute(path)
        if feats is None:
            return None
        write_json(path.with_suffix(".json"), {**(meta or {}), "shape": list(feats.shape), "dtype": "float16"})
    _MEMO[key] = feats
    while len(_MEMO) > MEMO_SIZE:
        _MEMO.popitem(last=False)
    return feats
