"""The model config's keys, each declared once: type, default, bounds or choices, and part in the config hash.

A config file only states what differs from these defaults. `hashed=False`: settings that move outputs
around (or make them faster) without changing them; data paths enter the hash as their contents'
identities instead (`config_hash(inputs=)`; a shard source's order and pixels too: models/train.py).
`neutral=`: settings added after runs were finished, left out of the hash while they hold the value that
reproduces the old behaviour, so those runs keep their hash.
"""
import math
import re

from core.images import INTERPOLATION
from models.knn_index import INDEX_KINDS
from models.schema import ConfigError, Key

RETRIEVAL_QUERIES = ("run", "clip")
# Sections added after runs were finished: left out of the hash while every key in them is (unhashed or at its
# neutral value), so those runs keep their hash.
SECTIONS_ADDED_LATER = ("retrieval",)
TTA_VIEWS = ("none", "flip", "crops", "norm2", "resize")
# The original string values, each the list of views it always meant: such a list is stored (and
# hashed) as its string, so runs configured either way share a hash.
TTA_PRESETS = {"none": ("none",), "flip": ("none", "flip"), "crops": ("none", "crops")}


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


def _checkpoint_every(value):
    parse_checkpoint_every(value)
    return value


def _run_name(v):
    return v.strip() not in ("", ".", "..") and not re.search(r"[/\\\x00]", v)


def _num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _pair(v, high):
    return len(v) == 2 and all(map(_num, v)) and 0 < v[0] <= v[1] <= high


def _three(v, positive=False):
    return len(v) == 3 and all(_num(x) and (x > 0 or not positive) for x in v)


MODEL_CONFIG = {
    "name": Key(None, str, default_from="the config file's stem", test=_run_name,
                must="a run name (a folder name: no slashes)"),
    "model": Key("backbone", str, choices=("backbone", "knn", "retrieval")),
    "seed": Key(42, int),
    "backbone": {
        "source": Key("timm", str, choices=("timm", "open_clip")),
        "name": Key(None, str, null=True),  # required when model is backbone
        # A pretrained tag (open_clip tag, or true for a timm name carrying its tag such as
        # "eva02_large_patch14_clip_336.merged2b"), a local checkpoint file, or null (random init).
        "pretrained": Key(None, (bool, str), null=True, must="null, true, a pretrained tag or a checkpoint file"),
        "kwargs": Key({}, dict),  # passed to timm.create_model / open_clip.create_model
        "drop_path_rate": Key(0.0, float, ge=0, lt=1),
        "grad_checkpointing": Key(False, bool),
    },
    "image": {
        "size": Key(224, int, ge=8),
        # null: the model's own preprocessing (timm data config / open_clip)
        "mean": Key(None, list, null=True, test=_three, must="a list of 3 numbers"),
        "std": Key(None, list, null=True, test=lambda v: _three(v, positive=True), must="a list of 3 positive numbers"),
        "interpolation": Key("bicubic", str, choices=tuple(sorted(INTERPOLATION))),
    },
    "augment": {
        "rrc_scale": Key([0.75, 1.0], list, test=lambda v: _pair(v, 1),  # random resized crop: area fraction
                         must="[low, high] with 0 < low <= high <= 1"),
        "rrc_ratio": Key([0.85, 1.15], list, test=lambda v: _pair(v, math.inf),
                         must="[low, high] with 0 < low <= high"),
        "hflip": Key(0.0, float, ge=0, le=1, must="a probability in [0, 1]"),  # hurt on this task: off by default
        "randaugment_ops": Key(2, int, ge=0),  # RandAugment-style ops per image (0: off)
        "randaugment_magnitude": Key(5, float, ge=0, le=10),
    },
    "head": {
        "type": Key("linear", str, choices=("linear", "mlp")),  # mlp: Linear-BN-ReLU-Linear
        "hidden": Key(1024, int, ge=1),
        "dropout": Key(0.0, float, ge=0, lt=1),
        # clip_text: a linear head on the unit image embedding, started at the least-squares map from the bank's
        # CLIP-text features (the backbone's own open_clip text tower) to their MiniLM embeddings (models/head_init.py)
        "init": Key(None, str, null=True, choices=("clip_text",), neutral=None),
        # the bank of head.init: a prompts.csv (python -m datagen.prompts) or its folder; its content is hashed
        "init_bank": Key(None, str, null=True, hashed=False),
        # the fit's ridge, relative to the text features' mean variance (models/head_init.py)
        "init_ridge": Key(0.1, float, gt=0, neutral=0.1),
    },
    "loss": {
        "type": Key("cosine", str, choices=("cosine", "residual_mse")),
        "mse_weight": Key(0.0, float, ge=0),  # cosine loss: add this x MSE(pred, target)
    },
    "train": {
        "epochs": Key(5, int, ge=1),
        "batch_size": Key(64, int, ge=1),  # per process
        "grad_accum": Key(1, int, ge=1),
        "lr": Key(1e-4, float, ge=0, note="0 keeps the weights fixed"),
        "min_lr": Key(1e-6, float, ge=0),
        "weight_decay": Key(0.05, float, ge=0),
        "layer_decay": Key(0.75, float, gt=0, le=1),  # 1.0: off
        "warmup_epochs": Key(1.0, float, ge=0),
        "linear_probe_epochs": Key(0, int, ge=0),  # backbone frozen for the first epochs
        "ema_decay": Key(0.0, float, ge=0, lt=1),  # 0: off
        # auto: bf16 on GPU, fp32 on CPU
        "precision": Key("auto", str, choices=("auto", "fp32", "bf16", "fp16")),
        "max_steps_per_epoch": Key(None, int, null=True, ge=1),  # cap for quick tests
        "inner_val_fraction": Key(0.0, float, ge=0, lt=1),  # > 0: hold out this share of the rows for early stopping
        "early_stopping_patience": Key(2, int, ge=0),
        # log the OOF fold's cosine every n epochs (monitoring only, never selection)
        "eval_every": Key(1, int, ge=0, note="0: no monitoring evaluation", hashed=False),
        # CPU threads per process; null: cores / processes
        "num_threads": Key(None, int, null=True, ge=1, hashed=False),
        "clip_grad": Key(None, float, null=True, gt=0, neutral=None),  # max gradient norm (null: no clipping)
        # mid-epoch checkpoints: every N optimizer updates, or "30min" (null: epoch ends only; SIGTERM / SIGINT
        # always save one)
        "checkpoint_every": Key(None, (int, str), null=True, convert=_checkpoint_every, hashed=False,
                                must="null, optimizer updates (an integer >= 0) or minutes ('30min')"),
    },
    "predict": {
        "batch_size": Key(128, int, ge=1, hashed=False),
        # none | flip | crops, or a list of views averaged over L2-normalised predictions, from TTA_VIEWS:
        # none, flip, crops (5% border crop), norm2 (the other of CLIP / ImageNet mean-std), resize (down to
        # 0.875 of the size and back up)
        "tta": Key("none", (str, list), convert=canonical_tta),
        # dtype of the run's oof.npy / test.npy (core.runs): float16 halves them (2M OOF rows: 1.5 GB per model) at a
        # cost in cosine of ~1e-6 (docs/stacker.md); it changes the stored outputs, so float16 enters the hash
        "storage": Key("float32", str, choices=("float32", "float16"), neutral="float32"),
    },
    "knn": {
        "k": Key(20, int, ge=1),
        "temperature": Key(0.05, float, gt=0),  # weights = softmax(cosine / temperature)
        "features_from": Key(None, str, null=True),  # a trained run directory (its fold checkpoints) ...
        "backbone": Key(None, dict, null=True, must="a backbone section"),  # ... or a frozen backbone section
        # neighbour search (models/knn_index.py): flat (exact) | ivf | auto (flat up to 250k bank rows)
        "index": Key("auto", str, choices=INDEX_KINDS, neutral="auto"),
        "nprobe": Key(8, int, ge=1, neutral=8),  # ivf: cells searched per query (bench/bench_knn.py)
        "nlist": Key(None, int, null=True, ge=1, neutral=None),  # ivf: cells; null: ~sqrt(bank rows)
    },
    # model: retrieval (models/retrieval.py): the prediction is the softmax(cosine / temperature)-weighted mean of
    # the MiniLM embeddings of the k bank prompts nearest to a query. Added after runs were finished: every key
    # is hash-neutral at its default, so a config without the section keeps its hash.
    "retrieval": {
        # run: a trained run's predictions are the queries, the bank's MiniLM embeddings its keys;
        # clip: the images through an open_clip image tower (the `backbone` section), the bank through its text tower
        "query": Key("run", str, choices=RETRIEVAL_QUERIES, neutral="run"),
        "run": Key(None, str, null=True, hashed=False),  # query: run: the run directory (its config hash is hashed)
        "bank": Key(None, str, null=True, hashed=False),  # a prompts.csv (its content's sha256 is hashed)
        "add_training_prompts": Key(False, bool, neutral=False),  # the training prompts join the bank
        "k": Key(20, int, ge=1, neutral=20),
        "temperature": Key(0.05, float, gt=0, neutral=0.05),  # weights = softmax(cosine / temperature)
        # the prediction: (1 - alpha) x the retrieved mean + alpha x the query (query: run; each L2-normalised)
        "alpha": Key(0.0, float, ge=0, le=1, neutral=0.0),
        "index": Key("auto", str, choices=INDEX_KINDS, neutral="auto"),  # as knn.index
        "nprobe": Key(8, int, ge=1, neutral=8),
        "nlist": Key(None, int, null=True, ge=1, neutral=None),
        # honest CV: a bank prompt within this cosine of a fold's training prompt is never retrieved for that
        # fold's OOF rows; null: the threshold the folds were grouped at (folds.json beside folds.csv, else 0.9)
        "match_threshold": Key(None, float, null=True, gt=0, neutral=None),
        # query: clip: contrastive fine-tuning steps of both towers per fold on the training pairs (0: as loaded;
        # learning rate train.lr, batch train.batch_size)
        "finetune_steps": Key(0, int, ge=0, neutral=0),
    },
    "data": {
        "train": Key("work/data/demo/train", str, test=bool, must="a path", hashed=False),
        "test": Key("work/data/demo/test", str, test=bool, must="a path", hashed=False),
        "targets": Key("work/targets/train", str, test=bool, must="a path", hashed=False),
        "folds": Key("work/folds.csv", str, test=bool, must="a path", hashed=False),
        "cache_dir": Key("work/cache", str, test=bool, must="a path", hashed=False),
        # where training pixels come from (models/data): cache and stream decode the same pixels; auto picks the
        # cache below CACHE_LIMIT_GIB, streaming above, and shards when data.train is a shard folder (core.shards)
        "source": Key("auto", str, choices=("auto", "cache", "stream", "shards"), hashed=False),
        # decode processes per training process (stream / shards); null: cores / processes, <= 8
        "workers": Key(None, int, null=True, ge=0, hashed=False),
        "shuffle_buffer": Key(1000, int, ge=1, hashed=False),  # shards: samples in the shuffle buffer
        # 1: each epoch trains on one image per prompt (prompt text), drawn per (seed, fold, epoch); OOF and
        # test still predict every image. null / 0: every image every epoch (0 is stored as null)
        "sample_per_prompt": Key(None, int, null=True, convert=lambda v: v or None, choices=(1,),
                                 must="null/0 (off) or 1", neutral=None),
    },
    "out": Key(None, str, default_from="work/runs/<name>", hashed=False),  # run directory
}
