"""Run configs: YAML data with defaults, dotted overrides, and a hash of what decides the result.

A config file only states what differs from DEFAULTS. `config_hash` covers every setting that
changes the model's predictions (not where outputs or caches go), so a finished run is skipped
only when the same settings would be trained again.
"""
import copy
import re
from pathlib import Path

import yaml

from core.io import sha256_json

DEFAULTS = {
    "name": None,  # run name; default: the config file's stem
    "model": "backbone",  # backbone | knn
    "seed": 42,
    "backbone": {
        "source": "timm",  # timm | open_clip
        "name": None,
        # A pretrained tag (open_clip tag, or true for a timm name carrying its tag such as
        # "eva02_large_patch14_clip_336.merged2b"), a local checkpoint file, or null (random init).
        "pretrained": None,
        "kwargs": {},  # passed to timm.create_model / open_clip.create_model
        "drop_path_rate": 0.0,
        "grad_checkpointing": False,
    },
    "image": {
        "size": 224,
        "mean": None,  # null: the model's own preprocessing (timm data config / open_clip)
        "std": None,
        "interpolation": "bicubic",
    },
    "augment": {
        "rrc_scale": [0.75, 1.0],  # random resized crop: area fraction
        "rrc_ratio": [0.85, 1.15],
        "hflip": 0.0,  # horizontal flip hurt on this task: off by default
        "randaugment_ops": 2,  # RandAugment-style ops per image (0: off)
        "randaugment_magnitude": 5,  # 0..10
    },
    "head": {"type": "linear", "hidden": 1024, "dropout": 0.0},  # linear | mlp (Linear-BN-ReLU-Linear)
    "loss": {
        "type": "cosine",  # cosine | residual_mse
        "mse_weight": 0.0,  # cosine loss: add this x MSE(pred, target)
    },
    "train": {
        "epochs": 5,
        "batch_size": 64,  # per process
        "grad_accum": 1,
        "lr": 1e-4,
        "min_lr": 1e-6,
        "weight_decay": 0.05,
        "layer_decay": 0.75,  # 1.0: off
        "warmup_epochs": 1.0,
        "linear_probe_epochs": 0,  # backbone frozen for the first epochs
        "ema_decay": 0.0,  # 0: off
        "precision": "auto",  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
        "max_steps_per_epoch": None,  # cap for quick tests
        "inner_val_fraction": 0.0,  # > 0: hold out this share of the training rows for early stopping
        "early_stopping_patience": 2,
        "eval_every": 1,  # log the OOF fold's cosine every n epochs (monitoring only, never selection)
        "num_threads": None,  # CPU threads per process; null: cores / processes
        "clip_grad": None,  # max gradient norm (null: no clipping)
        # mid-epoch checkpoints: every N optimizer updates, or "30min" (null: epoch ends only;
        # SIGTERM / SIGINT always save one)
        "checkpoint_every": None,
    },
    "predict": {"batch_size": 128, "tta": "none"},
    "knn": {
        "k": 20,
        "temperature": 0.05,  # weights = softmax(cosine / temperature)
        "features_from": None,  # a trained run directory (its fold checkpoints) ...
        "backbone": None,  # ... or a frozen backbone section like the one above
    },
    "data": {
        "train": "work/data/demo/train",
        "test": "work/data/demo/test",
        "targets": "work/targets/train",
        "folds": "work/folds.csv",
        "cache_dir": "work/cache",
    },
    "out": None,  # run directory; default: work/runs/<name>
}

# Settings that move outputs around without changing them: left out of the hash.
# Data paths are replaced in the hash by their contents' identities (see `config_hash(inputs=)`).
UNHASHED = {("data", "cache_dir"), ("data", "train"), ("data", "test"), ("data", "targets"), ("data", "folds"),
            ("out",), ("train", "num_threads"), ("predict", "batch_size"), ("train", "eval_every"),
            ("train", "checkpoint_every")}
# Settings added after runs were finished: left out of the hash while they hold the value that
# reproduces the old behaviour, so those runs keep their hash.
HASH_NEUTRAL = {("train", "clip_grad"): None}


class ConfigError(ValueError):
    pass


def _merge(base, update, path=""):
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if key not in base:
            raise ConfigError(f"unknown config key {path + key!r}")
        if isinstance(base[key], dict) and isinstance(value, dict) and key not in ("kwargs",) and base[key]:
            out[key] = _merge(base[key], value, f"{path}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text):
    """'train.epochs=3' -> (['train', 'epochs'], 3); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


REPO = Path(__file__).resolve().parents[1]


def load_config(path, overrides=()):
    """Read a YAML config (relative to the current folder, else to the repository) with overrides."""
    path = Path(path)
    if not path.is_file() and (REPO / path).is_file():
        path = REPO / path
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    try:
        cfg = _merge(DEFAULTS, raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    cfg["name"] = cfg["name"] or path.stem
    cfg["out"] = cfg["out"] or str(Path("work/runs") / cfg["name"])
    validate(cfg, path)
    return cfg


def validate(cfg, path="config"):
    def need(cond, msg):
        if not cond:
            raise ConfigError(f"{path}: {msg}")

    need(cfg["model"] in ("backbone", "knn"), f"model must be backbone or knn, got {cfg['model']!r}")
    if cfg["model"] == "backbone":
        need(cfg["backbone"]["source"] in ("timm", "open_clip"), "backbone.source must be timm or open_clip")
        need(bool(cfg["backbone"]["name"]), "backbone.name is required")
    else:
        knn = cfg["knn"]
        need(bool(knn["features_from"]) != bool(knn["backbone"]), "knn needs exactly one of knn.features_from or knn.backbone")
    need(cfg["head"]["type"] in ("linear", "mlp"), "head.type must be linear or mlp")
    need(cfg["loss"]["type"] in ("cosine", "residual_mse"), "loss.type must be cosine or residual_mse")
    need(cfg["train"]["precision"] in ("auto", "fp32", "bf16", "fp16"), "train.precision must be auto, fp32, bf16 or fp16")
    need(cfg["train"]["epochs"] >= 1, "train.epochs must be >= 1")
    need(0 < cfg["train"]["layer_decay"] <= 1, "train.layer_decay must be in (0, 1]")
    need(cfg["predict"]["tta"] in ("none", "flip", "crops"), "predict.tta must be none, flip or crops")
    clip = cfg["train"]["clip_grad"]
    need(clip is None or (isinstance(clip, (int, float)) and not isinstance(clip, bool) and clip > 0),
         f"train.clip_grad must be null or a positive number, got {clip!r}")
    try:
        parse_checkpoint_every(cfg["train"]["checkpoint_every"])
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None


def parse_checkpoint_every(value):
    """`train.checkpoint_every`: null/0 (epoch ends only), N optimizer updates, or "N min" -> (updates, seconds)."""
    if value in (None, 0, "0"):
        return None, None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"train.checkpoint_every must be >= 0, got {value}")
        return value, None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(min|m)\s*", str(value))
    if not m:
        raise ValueError(f"train.checkpoint_every: {value!r}; use optimizer updates (500) or minutes ('30min')")
    return None, float(m.group(1)) * 60


def config_hash(cfg, inputs=None):
    """sha256 of the result-deciding settings (and of the inputs' identities, if given)."""
    hashed = copy.deepcopy(cfg)
    for keys, neutral in HASH_NEUTRAL.items():
        node = hashed
        for k in keys[:-1]:
            node = node[k]
        if node.get(keys[-1], neutral) == neutral:
            node.pop(keys[-1], None)
    for keys in UNHASHED:
        node = hashed
        for k in keys[:-1]:
            node = node[k]
        node.pop(keys[-1], None)
    return sha256_json({"config": hashed, "inputs": inputs or {}})
