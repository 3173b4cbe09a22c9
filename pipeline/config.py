"""The pipeline config (configs/pipeline/*.yaml): its keys declared once (models/schema.py), read and checked
before any stage runs.

`models:` lists model configs, each a path or a mapping `{config: PATH, gpus: N}` (gpus: the processes
torchrun starts for that model's run; default: run_all's --gpus).
"""
from pathlib import Path

import yaml

from core.errors import DataError
from models.schema import REQUIRED, ConfigError, Key, check_values, merge, missing

REPO = Path(__file__).resolve().parents[1]


def _unknown(prefix, unknown, valid):
    return (f"unknown key(s) {sorted(map(str, unknown))} in {prefix.rstrip('.') or 'the pipeline config'}; "
            f"valid keys: {valid}")


def _section(schema, prefix):
    """`convert` of an optional section: its keys merged over their defaults and checked."""
    return lambda value: check_values(schema, merge(schema, value, prefix, _unknown), prefix)


def _model_entries(entries):
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, (str, dict)):
            raise ConfigError(f"models[{i}] must be a model config path or a mapping "
                              f"{{config: PATH, gpus: N}}, got {entry!r}")
        entry = _section(MODEL_ENTRY, f"models[{i}].")({"config": entry} if isinstance(entry, str) else entry)
        if missing(MODEL_ENTRY, entry):
            raise ConfigError(f"models[{i}] needs {missing(MODEL_ENTRY, entry)}")
        out.append(entry)
    return out


DEMO = {  # the procedural demo dataset (datagen.demo)
    "n_train": Key(REQUIRED, int, ge=1),
    "n_test": Key(REQUIRED, int, ge=1),
    "size": Key(REQUIRED, int, ge=8),  # image side in pixels
    "seed": Key(0, int, ge=0),
    # prompts in the demo's bank per training image (datagen.demo.bank), written when a retrieval model reads it
    "bank": Key(10, int, ge=1),
}
MODEL_ENTRY = {
    "config": Key(REQUIRED, str, test=bool, must="a model config path"),
    "gpus": Key(None, int, null=True, ge=1),  # torchrun processes for this run; null: run_all's --gpus
}
PIPELINE = {
    "data": {  # a demo: section, or train and test
        "demo": Key(None, dict, null=True, convert=_section(DEMO, "data.demo."), must="a mapping of the demo's sizes"),
        "train": Key(None, str, null=True),  # a dataset folder: images/ + prompts.csv
        "test": Key(None, str, null=True),  # images/
        "test_prompts": Key(None, str, null=True),  # a CSV imgId,prompt of the test images, to score the submission
    },
    "folds": {  # python -m core.folds
        "k": Key(5, int, ge=2),
        "threshold": Key(0.9, float),  # join prompts with cosine >= this
        "mode": Key("exact", str),
        "seed": Key(42, int),
    },
    "models": Key(REQUIRED, list, convert=_model_entries, test=bool, must="a non-empty list of model config paths"),
    "ensemble": {  # python -m ensemble.fit
        "method": Key("auto", str),
        "include_baseline": Key(True, bool),  # the mean-embedding baseline joins the stack: the blend's intercept
    },
}


def read_yaml(path, what):
    """A YAML mapping from `path`; unreadable or unparsable -> DataError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read the {what} ({e})") from None
    except yaml.YAMLError as e:
        raise DataError(path, f"the {what} is not valid YAML: {' '.join(str(e).split())}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise DataError(path, f"the {what} must be a YAML mapping (key: value lines), got a {type(raw).__name__}")
    return raw


def load_pipeline(path):
    """Read and check a pipeline config: every key (types, bounds), and data: a demo: section or train and test."""
    path = Path(path)
    try:
        cfg = merge(PIPELINE, read_yaml(path, "pipeline config"), unknown=_unknown)
        if missing(PIPELINE, cfg):
            raise ConfigError(f"missing section {missing(PIPELINE, cfg)[0]!r}")
        cfg = check_values(PIPELINE, cfg)
        d = cfg["data"]
        lacks = missing(DEMO, d["demo"]) if d["demo"] else [k for k in ("train", "test") if not d[k]]
        if lacks:
            raise ConfigError(f"data needs {lacks} (or a demo: section)")
    except ConfigError as e:
        raise DataError(path, str(e)) from None
    return cfg


def resolve_config(path, what="model config"):
    """A config path as given (relative to the current folder) or relative to the repository."""
    p = Path(path)
    for cand in (p, REPO / p):
        if cand.is_file():
            return cand.resolve()
    raise DataError(path, f"{what} not found (relative to {Path.cwd()} or {REPO})")
