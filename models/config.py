"""Run configs: YAML data with defaults, dotted overrides, and a hash of what decides the result.

A config file only states what differs from DEFAULTS. `config_hash` covers every setting that
changes the model's predictions (not where outputs or caches go), so a finished run is skipped
only when the same settings would be trained again.
"""
import copy
import difflib
import math
import re
from pathlib import Path

import yaml

from core.errors import InputError
from core.io import sha256_json
from models.knn_index import INDEX_KINDS

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
    # tta: none | flip | crops, or a list of views averaged over L2-normalised predictions, from
    # TTA_VIEWS: none, flip, crops (5% border crop), norm2 (the other of CLIP / ImageNet mean-std),
    # resize (down to 0.875 of the size and back up)
    "predict": {"batch_size": 128, "tta": "none"},
    "knn": {
        "k": 20,
        "temperature": 0.05,  # weights = softmax(cosine / temperature)
        "features_from": None,  # a trained run directory (its fold checkpoints) ...
        "backbone": None,  # ... or a frozen backbone section like the one above
        # neighbour search (models/knn_index.py): flat (exact) | ivf | auto (flat up to 250k bank rows)
        "index": "auto",
        "nprobe": 8,  # ivf: cells searched per query (bench/bench_knn.py: >= 0.95 recall of the exact top-20)
        "nlist": None,  # ivf: cells; null: ~sqrt(bank rows)
    },
    "data": {
        "train": "work/data/demo/train",
        "test": "work/data/demo/test",
        "targets": "work/targets/train",
        "folds": "work/folds.csv",
        "cache_dir": "work/cache",
        # where training pixels come from (models/data): auto | cache | stream | shards. cache and stream
        # decode the same pixels; auto picks the cache below CACHE_LIMIT_GIB, streaming above, and
        # shards when data.train is a shard folder (python -m core.shards)
        "source": "auto",
        "workers": None,  # decode processes per training process (stream / shards); null: cores / processes, <= 8
        "shuffle_buffer": 1000,  # shards: samples in the (simulated) webdataset shuffle buffer
        # 1: each epoch trains on one image per prompt (prompt text), drawn per (seed, fold, epoch);
        # OOF and test still predict every image. null / 0: every image every epoch
        "sample_per_prompt": None,
    },
    "out": None,  # run directory; default: work/runs/<name>
}

# Settings that move outputs around without changing them: left out of the hash.
# Data paths are replaced in the hash by their contents' identities (see `config_hash(inputs=)`).
UNHASHED = {("data", "cache_dir"), ("data", "train"), ("data", "test"), ("data", "targets"), ("data", "folds"),
            ("out",), ("train", "num_threads"), ("predict", "batch_size"), ("train", "eval_every"),
            ("train", "checkpoint_every"), ("data", "source"), ("data", "workers"), ("data", "shuffle_buffer")}
# (a shard source's order and pixels enter the hash through the run's input identity instead: models/train.py)
# Settings added after runs were finished: left out of the hash while they hold the value that
# reproduces the old behaviour, so those runs keep their hash.
HASH_NEUTRAL = {("train", "clip_grad"): None, ("data", "sample_per_prompt"): None,
                ("knn", "index"): "auto", ("knn", "nprobe"): 8, ("knn", "nlist"): None}
DATA_SOURCES = ("auto", "cache", "stream", "shards")
TTA_VIEWS = ("none", "flip", "crops", "norm2", "resize")
# The original string values, each the list of views it always meant: such a list is stored (and
# hashed) as its string, so runs configured either way share a hash.
TTA_PRESETS = {"none": ("none",), "flip": ("none", "flip"), "crops": ("none", "crops")}


class ConfigError(InputError):
    """A bad config or override; the message starts with the config file (CLIs: `error: <file>: <problem>`, exit 2)."""


def tta_views(value):
    """`predict.tta` (a preset name or a list of views) -> tuple of view names."""
    if isinstance(value, str):
        if value in TTA_PRESETS:
            return TTA_PRESETS[value]
        value = [v.strip() for v in value.split(",")]
    views = tuple(value or ())
    bad = [v for v in views if v not in TTA_VIEWS]
    if not views or bad or len(set(views)) != len(views):
        raise ConfigError(f"predict.tta must be one of {sorted(TTA_PRESETS)} or a list of distinct views from "
                          f"{list(TTA_VIEWS)}, got {value!r}")
    return views


def canonical_tta(value):
    views = tta_views(value)
    return next((name for name, v in TTA_PRESETS.items() if v == views), list(views))


# Keys whose default is an integer but which take any number; keys whose default is a string but which
# take a list too. Every other key with a non-null default takes values of its default's type.
NUMBER_KEYS = {"augment.randaugment_magnitude"}
LIST_OR_STR_KEYS = {"predict.tta"}
STR_OR_NULL_KEYS = {"name", "out", "backbone.name", "knn.features_from"}


def _kind(default):
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    return {str: "a string", list: "a list", dict: "a mapping"}.get(type(default))


def _check_type(key, default, value):
    """`value` for a key whose default is `default`: the same type (numbers: int for float), else a ConfigError.

    A float given as a string ("1e-4": YAML 1.1 reads exponents without a dot as text) is converted."""
    if key in LIST_OR_STR_KEYS:
        if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
            raise ConfigError(f"{key} must be a string or a list of strings, got {value!r}")
        return value
    if key in STR_OR_NULL_KEYS and value is not None and not isinstance(value, str):
        raise ConfigError(f"{key} must be a string or null, got {value!r} ({type(value).__name__})")
    if default is None:
        return value
    if isinstance(default, dict) and value is None:
        return {}
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int) and key not in NUMBER_KEYS:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, (int, float)):
        if isinstance(value, str):
            try:
                value, number = float(value), True
            except ValueError:
                pass
        ok = number
    else:
        ok = isinstance(value, type(default)) or (isinstance(default, list) and isinstance(value, tuple))
    if not ok:
        raise ConfigError(f"{key} must be {_kind(default)}, got {value!r} ({type(value).__name__})")
    return value


def _merge(base, update, path=""):
    if update is None:  # an empty section (`train:` with every line commented out)
        update = {}
    if not isinstance(update, dict):
        raise ConfigError(f"{path.rstrip('.') or 'the config'} must be a mapping (key: value lines), got {update!r}")
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key not in base:
            close = difflib.get_close_matches(str(key), [str(k) for k in base], n=3)
            hint = f" (did you mean {[path + c for c in close]}?)" if close else ""
            raise ConfigError(f"unknown config key {path + str(key)!r}{hint}; valid keys in "
                              f"{path.rstrip('.') or 'the top level'}: {sorted(base)}")
        if isinstance(base[key], dict) and key not in ("kwargs",) and base[key]:
            out[key] = _merge(base[key], value, f"{path}{key}.")
        else:
            out[key] = _check_type(path + key, base[key], copy.deepcopy(value))
    return out


def parse_override(text):
    """'train.epochs=3' -> (['train', 'epochs'], 3); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, value = text.split("=", 1)
    keys = [k.strip() for k in key.strip().split(".")]
    if not all(keys):
        raise ConfigError(f"override {text!r}: {key!r} is not a dotted key like train.epochs")
    try:
        return keys, yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: the value {value!r} is not valid YAML "
                          f"({' '.join(str(e).split())[:120]}); quote it, e.g. {key}='...'") from None


def apply_override(raw, text):
    """Set one `section.key=value` override in a raw config mapping."""
    keys, value = parse_override(text)
    node = raw
    for depth, k in enumerate(keys[:-1]):
        if node.get(k) is None:  # absent, or an empty section
            node[k] = {}
        node = node[k]
        if not isinstance(node, dict):
            raise ConfigError(f"override {text!r}: {'.'.join(keys[:depth + 1])} is not a section")
    node[keys[-1]] = value


REPO = Path(__file__).resolve().parents[1]


def load_config(path, overrides=()):
    """Read a YAML config (relative to the current folder, else to the repository) with overrides."""
    path = Path(path)
    if not path.is_file() and (REPO / path).is_file():
        path = REPO / path
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"a config is a YAML mapping (key: value lines), got {type(raw).__name__} {raw!r}")
        for text in overrides:
            apply_override(raw, text)
        cfg = _merge(DEFAULTS, raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a valid YAML file ({' '.join(str(e).split())[:200]})") from None
    cfg["name"] = cfg["name"] or path.stem
    try:
        cfg["predict"]["tta"] = canonical_tta(cfg["predict"]["tta"])
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    if not cfg["data"]["sample_per_prompt"]:
        cfg["data"]["sample_per_prompt"] = None  # 0 and null both mean off (and hash as before)
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
    _check_ranges(cfg, need)
    need(cfg["data"]["source"] in DATA_SOURCES,
         f"data.source must be one of {list(DATA_SOURCES)}, got {cfg['data']['source']!r}")
    try:
        parse_checkpoint_every(cfg["train"]["checkpoint_every"])
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None


def _num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(x):
    return isinstance(x, int) and not isinstance(x, bool)


# (section, key, test, what the value must be): after the type checks of _merge, the ranges
RANGES = [
    ("train", "batch_size", lambda v: v >= 1, ">= 1"),
    ("train", "grad_accum", lambda v: v >= 1, ">= 1"),
    ("train", "lr", lambda v: _num(v) and v >= 0, ">= 0 (0 keeps the weights fixed)"),
    ("train", "min_lr", lambda v: _num(v) and v >= 0, ">= 0"),
    ("train", "weight_decay", lambda v: _num(v) and v >= 0, ">= 0"),
    ("train", "warmup_epochs", lambda v: _num(v) and v >= 0, ">= 0"),
    ("train", "linear_probe_epochs", lambda v: _num(v) and v >= 0, ">= 0"),
    ("train", "ema_decay", lambda v: _num(v) and 0 <= v < 1, "in [0, 1)"),
    ("train", "max_steps_per_epoch", lambda v: v is None or (_int(v) and v >= 1), "null or an integer >= 1"),
    ("train", "inner_val_fraction", lambda v: _num(v) and 0 <= v < 1, "in [0, 1)"),
    ("train", "early_stopping_patience", lambda v: v >= 0, ">= 0"),
    ("train", "eval_every", lambda v: v >= 0, ">= 0 (0: no monitoring evaluation)"),
    ("train", "num_threads", lambda v: v is None or (_int(v) and v >= 1), "null or an integer >= 1"),
    ("image", "size", lambda v: v >= 8, ">= 8"),
    ("image", "mean", lambda v: v is None or (isinstance(v, list) and len(v) == 3 and all(map(_num, v))),
     "null or a list of 3 numbers"),
    ("image", "std", lambda v: v is None or (isinstance(v, list) and len(v) == 3 and all(_num(x) and x > 0 for x in v)),
     "null or a list of 3 positive numbers"),
    ("augment", "rrc_scale", lambda v: len(v) == 2 and all(map(_num, v)) and 0 < v[0] <= v[1] <= 1,
     "[low, high] with 0 < low <= high <= 1"),
    ("augment", "rrc_ratio", lambda v: len(v) == 2 and all(map(_num, v)) and 0 < v[0] <= v[1],
     "[low, high] with 0 < low <= high"),
    ("augment", "hflip", lambda v: _num(v) and 0 <= v <= 1, "a probability in [0, 1]"),
    ("augment", "randaugment_ops", lambda v: v >= 0, ">= 0"),
    ("augment", "randaugment_magnitude", lambda v: _num(v) and 0 <= v <= 10, "in [0, 10]"),
    ("head", "hidden", lambda v: v >= 1, ">= 1"),
    ("head", "dropout", lambda v: _num(v) and 0 <= v < 1, "in [0, 1)"),
    ("loss", "mse_weight", lambda v: _num(v) and v >= 0, ">= 0"),
    ("backbone", "drop_path_rate", lambda v: _num(v) and 0 <= v < 1, "in [0, 1)"),
    ("predict", "batch_size", lambda v: v >= 1, ">= 1"),
    ("knn", "k", lambda v: v >= 1, ">= 1"),
    ("knn", "temperature", lambda v: _num(v) and v > 0, "a positive number"),
    ("knn", "index", lambda v: v in INDEX_KINDS, f"one of {list(INDEX_KINDS)}"),
    ("knn", "nprobe", lambda v: _int(v) and v >= 1, "an integer >= 1"),
    ("knn", "nlist", lambda v: v is None or (_int(v) and v >= 1), "null or an integer >= 1"),
    ("data", "sample_per_prompt", lambda v: v in (None, 0, 1), "null/0 (off) or 1"),
    ("data", "workers", lambda v: v is None or (isinstance(v, int) and v >= 0), "null or an integer >= 0"),
    ("data", "shuffle_buffer", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    ("train", "clip_grad", lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0),
     "null or a positive number"),
    ("knn", "backbone", lambda v: v is None or isinstance(v, dict), "null or a backbone section"),
    ("backbone", "pretrained", lambda v: v is None or isinstance(v, (bool, str)),
     "null, true, a pretrained tag or a checkpoint file"),
]


def _check_ranges(cfg, need):
    for section, key, test, what in RANGES:
        if key in cfg.get(section, {}):
            value = cfg[section][key]
            try:
                ok = bool(test(value))
            except TypeError:
                ok = False
            need(ok, f"{section}.{key} must be {what}, got {value!r}")
    from core.images import INTERPOLATION

    need(cfg["image"]["interpolation"] in INTERPOLATION,
         f"image.interpolation must be one of {sorted(INTERPOLATION)}, got {cfg['image']['interpolation']!r}")
    name = cfg["name"]
    need(isinstance(name, str) and name.strip() not in ("", ".", "..") and not re.search(r"[/\\\x00]", name),
         f"name must be a run name (a folder name: no slashes), got {name!r}")
    need(cfg["out"] is None or isinstance(cfg["out"], str), f"out must be a folder path, got {cfg['out']!r}")
    for key in ("train", "test", "targets", "folds", "cache_dir"):
        need(isinstance(cfg["data"][key], str) and cfg["data"][key] != "", f"data.{key} must be a path, got "
                                                                             f"{cfg['data'][key]!r}")


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
