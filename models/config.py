"""Run configs: YAML data with defaults, dotted overrides, and a hash of what decides the result.

A config file only states what differs from the defaults. Every key is declared once, in
models/config_schema.py (type, default, bounds or choices, part in the hash); `config_hash` covers
every setting that changes the model's predictions (not where outputs or caches go), so a finished run
is skipped only when the same settings would be trained again.
"""
import copy
from pathlib import Path

import yaml

from core.io import sha256_json
from models import schema
from models.config_schema import (
    MODEL_CONFIG,
    SECTIONS_ADDED_LATER,
    TTA_PRESETS,
    TTA_VIEWS,
    canonical_tta,
    parse_checkpoint_every,
    tta_views,
)
from models.schema import ConfigError

__all__ = ["ConfigError", "DEFAULTS", "HASH_NEUTRAL", "MODEL_CONFIG", "TTA_PRESETS", "TTA_VIEWS", "UNHASHED",
           "apply_override", "canonical_tta", "config_hash", "load_config", "parse_checkpoint_every",
           "parse_override", "tta_views", "validate"]

DEFAULTS = schema.defaults(MODEL_CONFIG)
UNHASHED = schema.unhashed(MODEL_CONFIG)  # key paths left out of the hash
HASH_NEUTRAL = schema.hash_neutral(MODEL_CONFIG)  # key path -> the value under which it is left out


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
        cfg = schema.merge(MODEL_CONFIG, raw)
        cfg["name"] = cfg["name"] or path.stem
        cfg["out"] = cfg["out"] or str(Path("work/runs") / cfg["name"])
        validate(cfg)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a valid YAML file ({' '.join(str(e).split())[:200]})") from None
    return cfg


def validate(cfg):
    """Every value of a merged config (normalised in place: predict.tta, data.sample_per_prompt), then the
    rules between keys; ConfigError on the first problem."""
    schema.check_values(MODEL_CONFIG, cfg)
    if cfg["model"] == "backbone" and not cfg["backbone"]["name"]:
        raise ConfigError("backbone.name is required")
    if cfg["model"] == "knn" and bool(cfg["knn"]["features_from"]) == bool(cfg["knn"]["backbone"]):
        raise ConfigError("knn needs exactly one of knn.features_from or knn.backbone")
    if cfg["model"] == "retrieval":
        r = cfg["retrieval"]
        if not r["bank"]:
            raise ConfigError("retrieval needs retrieval.bank (a prompts.csv)")
        if r["query"] == "run" and not r["run"]:
            raise ConfigError("retrieval.query: run needs retrieval.run (a trained run directory)")
        if r["query"] == "clip" and (cfg["backbone"]["source"] != "open_clip" or not cfg["backbone"]["name"]):
            raise ConfigError("retrieval.query: clip needs an open_clip model with both towers: backbone.source: "
                              "open_clip and backbone.name")
        if r["query"] == "clip" and r["alpha"]:
            raise ConfigError("retrieval.alpha mixes a query: run query back in; a CLIP image feature is no MiniLM "
                              "embedding: use alpha 0 with query: clip")
    if cfg["head"]["init"] == "clip_text":
        check_clip_text_init(cfg)
    return cfg


def check_clip_text_init(cfg):
    """head.init clip_text needs the backbone's CLIP projection (an open_clip image tower), a linear head, a bank."""
    if cfg["model"] != "backbone":
        raise ConfigError("head.init clip_text is for model: backbone")
    if cfg["backbone"]["source"] != "open_clip":
        raise ConfigError("head.init clip_text needs the backbone's CLIP projection, which timm backbones drop (built "
                          "headless, num_classes=0); use the open_clip image tower (backbone.source: open_clip, e.g. "
                          "name EVA02-L-14-336 with pretrained merged2b_s6b_b61k)")
    if cfg["head"]["type"] != "linear":
        raise ConfigError("head.init clip_text starts a linear head; set head.type: linear")
    if not cfg["head"]["init_bank"]:
        raise ConfigError("head.init clip_text needs head.init_bank: a prompts.csv (python -m datagen.prompts)")


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
    for section in SECTIONS_ADDED_LATER:
        if hashed.get(section) == {}:  # every key left out: the hash of a config from before the section
            hashed.pop(section)
    return sha256_json({"config": hashed, "inputs": inputs or {}})
