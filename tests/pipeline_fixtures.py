"""The smallest whole pipeline, run once per test session (conftest's `tiny_pipeline`) for the crash and pipeline tests.

tests/data/pipeline_tiny.yaml: 40 demo images, K = 2, one ConvNeXt-atto, a step or two per fold. Its model config
is a copy beside the pipeline's own config, so a test can edit it; `checkout` lends the whole folder to a test that
changes it.
"""
import os
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.helpers import subprocess_env
from tests.model_fixtures import REPO

PIPELINE = REPO / "tests" / "data" / "pipeline_tiny.yaml"
MODEL_SET = ["train.epochs=1", "train.max_steps_per_epoch=2", "image.size=32", "train.num_threads=1"]
MODEL = "convnext_demo"


@dataclass
class TinyPipeline:
    root: Path  # holds config, model_config and work
    config: Path
    model_config: Path
    work: Path
    stdout: str  # what the first, uninterrupted run printed


def run_all(config, work, *options, fault=None):
    cmd = [str(REPO / "run_all.sh"), "--config", str(config), "--work", str(work), *options]
    for s in MODEL_SET:
        cmd += ["--model-set", s]
    return subprocess.run(cmd, cwd=REPO, env=subprocess_env(fault), capture_output=True, text=True, timeout=900)


def build_tiny_pipeline(root):
    root = Path(root)
    cfg = yaml.safe_load(PIPELINE.read_text())
    model_config = root / f"{MODEL}.yaml"
    shutil.copyfile(REPO / cfg["models"][0], model_config)
    cfg["models"] = [str(model_config)]
    config = root / "pipeline.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    work = root / "work"
    res = run_all(config, work)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return TinyPipeline(root, config, model_config, work, res.stdout)


@contextmanager
def checkout(pipeline):
    """Lend the pipeline's folder to a test that changes it, at its own path (stage fingerprints hold absolute
    paths and file times): the original is moved aside and copied back with its file times; afterwards the
    original returns, so every test sees the first run's state."""
    aside = pipeline.root.with_name(pipeline.root.name + ".orig")
    os.rename(pipeline.root, aside)
    try:
        shutil.copytree(aside, pipeline.root, symlinks=True)  # copy2: mtimes kept to the nanosecond
        yield pipeline
    finally:
        shutil.rmtree(pipeline.root, ignore_errors=True)
        os.rename(aside, pipeline.root)


def fresh_copy(reference, dest):
    """The reference's data and prompt embeddings; no stamps, folds, runs or ensemble."""
    shutil.copytree(reference / "data", dest / "data")
    shutil.copytree(reference / "targets", dest / "targets")
    shutil.copytree(reference / "cache" / "text_embeddings", dest / "cache" / "text_embeddings")
    return dest

